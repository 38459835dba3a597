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


async def test_the_gate_is_reentrant_for_its_holder_and_released_by_an_error() -> None:
    from core.services.trading_state import OrderGate

    gate, order = OrderGate(), []

    async def other() -> None:
        async with gate.hold():
            order.append("other")

    waiting = None
    with pytest.raises(ValueError, match="boom"):
        async with gate.hold():
            waiting = asyncio.create_task(other())
            async with gate.hold():  # the holder again: at once
                await asyncio.sleep(0)
                order.append("inner")
            await asyncio.sleep(0)
            order.append("outer")
            raise ValueError("boom")
    assert waiting is not None
    await asyncio.wait_for(waiting, 1)  # released despite the error
    assert order == ["inner", "outer", "other"]
