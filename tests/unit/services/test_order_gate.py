"""A halt and the orders in flight: an order whose gate check began before the halt is sent
before the halt is acknowledged; none is sent after it; a gate check that halts by itself
(the daily loss limit) does not wait for itself."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

import pytest

from core.clock import SimClock
from core.domain.enums import TradingState
from core.domain.policy import Policy
from core.services.bus import EventBus
from core.services.execution import ExecutionService
from core.services.trading_state import TradingStateService
from storage.memory import MemoryStorage
from tests.fakes import quiet_limits
from tests.unit.services.test_execution import T0_MS, FakeExchange, buy


class SlowVenue(FakeExchange):
    """A venue whose answer to an order waits until released."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.release = asyncio.Event()
        self.entered = asyncio.Event()
        self.sent_at: list[str] = []  # the trading state when each order reached the venue

    async def create_order(self, request):  # type: ignore[no-untyped-def]
        self.entered.set()
        await self.release.wait()
        return await super().create_order(request)


def gated(venue: FakeExchange, limits=None):  # type: ignore[no-untyped-def]
    """Return an ExecutionService whose orders share a TradingStateService's order gate (as
    bot.trading wires them), and that service; ``limits`` None: quiet ones."""
    bus = EventBus()
    states = TradingStateService(MemoryStorage().state, bus, venue.clock)

    async def exposure(symbol: str) -> tuple[D, int, D]:
        return D(10_000), 0, D(0)

    async def quiet(intent, account):  # type: ignore[no-untyped-def]
        return quiet_limits(venue.clock.now_ms(), D(10_000))

    service = ExecutionService(
        exchange=venue,
        bus=bus,
        clock=venue.clock,
        trading_state=states.current,
        policy=Policy,
        exposure=exposure,
        limits=(limits or (lambda states: quiet))(states),
        order_gate=states.order_gate,
    )
    return service, states


async def test_the_halt_waits_for_the_order_in_flight_and_denies_every_later_one() -> None:
    venue = SlowVenue(balances={"USDT": D(10_000)}, clock=SimClock(T0_MS))
    service, states = gated(venue)
    first = asyncio.create_task(service.submit(buy("qt-BTC-1-e", "1"), reference_price=D(100)))
    await asyncio.wait_for(venue.entered.wait(), 2)  # checked (ACTIVE), now at the venue
    halting = asyncio.create_task(states.set(TradingState.HALTED, reason="/halt", actor="op"))
    await asyncio.sleep(0.01)
    assert not halting.done()  # not acknowledged while an order checked before it is out
    venue.release.set()
    assert (await first).order is not None
    assert await halting is True
    later = await service.submit(buy("qt-BTC-2-e", "1"), reference_price=D(100))
    assert later.denied and later.order is None
    assert [c.args[0].client_order_id for c in venue.calls_to("create_order")] == ["qt-BTC-1-e"]


async def test_a_gate_check_that_halts_by_itself_does_not_deadlock() -> None:
    def halting(states):  # type: ignore[no-untyped-def]
        async def limits_that_halt(intent, account):  # type: ignore[no-untyped-def]
            await states.set(TradingState.HALTED, reason="daily loss", actor="risk")  # in the gate
            return None

        return limits_that_halt

    service, states = gated(
        FakeExchange(balances={"USDT": D(10_000)}, clock=SimClock(T0_MS)), halting
    )
    done = await asyncio.wait_for(service.submit(buy(amount="1"), reference_price=D(100)), 2)
    assert done.denied and await states.current() is TradingState.HALTED


async def test_orders_pass_side_by_side_and_a_halt_passes_alone() -> None:
    from core.services.order_gate import OrderGate

    gate, seen = OrderGate(), []
    first_in, first_out = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with gate.hold():
            first_in.set()
            await first_out.wait()
            seen.append("first")

    async def second() -> None:
        async with gate.hold():
            seen.append("second")

    async def halt() -> None:
        async with gate.hold_alone():
            seen.append("halt")

    one = asyncio.create_task(first())
    await first_in.wait()
    await asyncio.wait_for(second(), 1)  # beside the first, which is still at the venue
    halting = asyncio.create_task(halt())
    await asyncio.sleep(0)
    later = asyncio.create_task(second())  # comes after the halt: waits for it
    for _ in range(5):
        await asyncio.sleep(0)
    assert seen == ["second"] and not halting.done() and not later.done()
    first_out.set()
    await asyncio.wait_for(asyncio.gather(one, halting, later), 1)
    assert seen == ["second", "first", "halt", "second"]


async def test_the_gate_held_alone_is_reentrant_for_its_holder_and_released_by_an_error() -> None:
    from core.services.order_gate import OrderGate

    gate, order = OrderGate(), []

    async def other() -> None:
        async with gate.hold():
            order.append("other")

    waiting = None
    with pytest.raises(ValueError, match="boom"):
        async with gate.hold_alone():
            waiting = asyncio.create_task(other())
            async with gate.hold_alone(), gate.hold():  # the holder again: at once
                await asyncio.sleep(0)
                order.append("inner")
            await asyncio.sleep(0)
            order.append("outer")
            raise ValueError("boom")
    assert waiting is not None
    await asyncio.wait_for(waiting, 1)  # released despite the error
    assert order == ["inner", "outer", "other"]


async def test_a_halt_cancelled_while_it_waits_lets_the_orders_behind_it_go() -> None:
    from core.services.order_gate import OrderGate

    gate = OrderGate()
    out = asyncio.Event()

    async def slow_order() -> None:
        async with gate.hold():
            await out.wait()

    async def halt() -> None:
        async with gate.hold_alone():
            pass

    async def order() -> None:
        async with gate.hold():
            pass

    slow = asyncio.create_task(slow_order())
    await asyncio.sleep(0)
    halting = asyncio.create_task(halt())
    await asyncio.sleep(0)
    behind = asyncio.create_task(order())
    await asyncio.sleep(0)
    assert not behind.done()
    halting.cancel()
    await asyncio.wait_for(behind, 1)  # no longer behind a halt
    out.set()
    await asyncio.wait_for(slow, 1)
    await asyncio.wait_for(halt(), 1)  # and the gate can still be held alone


async def test_two_gate_checks_that_halt_at_once_do_not_deadlock() -> None:
    """Each order's check halts while the other's is under way: each waits for the other
    order only once that one is out of its check (it reads the state afterwards)."""
    both_checking = asyncio.Event()
    checking = 0

    def halting(states):  # type: ignore[no-untyped-def]
        async def limits_that_halt(intent, account):  # type: ignore[no-untyped-def]
            nonlocal checking
            checking += 1
            if checking == 2:
                both_checking.set()
            await both_checking.wait()
            await states.set(TradingState.HALTED, reason="daily loss", actor="risk")
            return None

        return limits_that_halt

    service, states = gated(
        FakeExchange(balances={"USDT": D(10_000)}, clock=SimClock(T0_MS)), halting
    )
    orders = [service.submit(buy(f"qt-BTC-{i}-e", "1"), reference_price=D(100)) for i in range(2)]
    done = await asyncio.wait_for(asyncio.gather(*orders), 2)
    assert all(d.denied for d in done) and await states.current() is TradingState.HALTED


async def test_a_stop_goes_out_while_a_halt_waits_for_an_order_at_a_slow_venue() -> None:
    """Stops and exits at market go in every trading state: a halt being written (waiting
    for another symbol's entry answered slowly) holds none of them back."""
    venue = SlowVenue(balances={"USDT": D(10_000)}, clock=SimClock(T0_MS))
    service, states = gated(venue)
    entry = asyncio.create_task(service.submit(buy("qt-BTC-1-e", "1"), reference_price=D(100)))
    await asyncio.wait_for(venue.entered.wait(), 2)
    halting = asyncio.create_task(states.set(TradingState.HALTED, reason="/halt", actor="op"))
    await asyncio.sleep(0)
    venue.create_order = FakeExchange.create_order.__get__(venue)  # type: ignore[method-assign]
    stop = await asyncio.wait_for(
        service.submit(buy("qt-BTC-2-x", "1", reduce_only=True), reference_price=D(100)), 1
    )
    assert stop.order is not None and not halting.done()
    venue.release.set()
    await asyncio.wait_for(asyncio.gather(entry, halting), 1)
