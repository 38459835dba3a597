"""Adversarial sequences against the per-symbol engine locks (``core.services.engine_locks``):
two tasks on the same trade at once, a flatten or a halt racing a venue sync, cancellation.

The venue is ``SlowReads``: ``SlowSymbol`` whose positions reads can be made to wait until
the test answers them, as a venue timing out on them does.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal as D
from pathlib import Path

import pytest

from core.domain.enums import TradingState
from core.domain.events import OrderFilled
from core.domain.orders import Order
from core.domain.portfolio import Position
from core.errors import TemporaryError
from core.services.flatten import ExposureCut
from core.services.trading_state import TradingStateService
from tests.unit.services import test_engine_venue_sync as venue_sync_tests
from tests.unit.services.engine_harness import SYMBOL
from tests.unit.services.test_engine_live_races import NO_CORRELATION
from tests.unit.services.test_engine_symbol_locks import (
    ETH,
    ETH_ENTRY,
    SOL,
    SlowSymbol,
    exits_of,
    stop_of,
    until,
)
from tests.unit.services.test_engine_venue_sync import ENTRY, STOP, TP1, Live, live, quiet


class SlowReads(SlowSymbol):
    """A positions read answers, while ``reads`` is set and not yet answered, what the venue
    held when it was asked, once the test answers it (a slow venue's late answer)."""

    reads: asyncio.Event | None = None
    reads_waiting = 0

    async def fetch_positions(self) -> list[Position]:
        held = await super().fetch_positions()
        if self.reads is not None and not self.reads.is_set():
            self.reads_waiting += 1
            try:
                await self.reads.wait()
            finally:
                self.reads_waiting -= 1
        await asyncio.sleep(0)
        return held

    def hang_reads(self) -> asyncio.Event:
        self.reads = asyncio.Event()
        return self.reads


async def protected(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str] | None = None
) -> tuple[Live, SlowReads]:
    """BTC's entry filled at 100 and its exits placed by a sync."""
    lv = await live(monkeypatch, tmp_path, venue_class=SlowReads, env=env or NO_CORRELATION)
    assert isinstance(lv.venue, SlowReads)
    lv.venue.script_fill(ENTRY, D(100))
    await lv.engine.sync_with_venue()
    assert STOP in lv.open_cids()
    return lv, lv.venue


async def test_a_flatten_sends_no_exit_for_a_position_its_stop_closed_while_the_account_was_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lv, venue = await protected(monkeypatch, tmp_path)
    answer = venue.hang_reads()
    flatten = asyncio.create_task(lv.engine.reduce_exposure(0.0, "test"))
    assert await until(lambda: venue.reads_waiting), "the flatten never read the account"
    # The flatten's positions read answered with BTC's 50 ... then its stop fills and a sync
    # books the close before the flatten goes on.
    venue.reads = None
    venue.script_fill(STOP, D(99))
    assert not venue.positions
    await lv.engine.sync_with_venue()
    assert SYMBOL not in lv.engine.trades  # closed and forgotten
    answer.set()
    cut = await flatten
    sent = [c.args[0] for c in venue.calls_to("create_order")]
    assert [r.tag for r in sent if r.symbol == SYMBOL and r.tag.startswith("EXIT")] == [], (
        "a market exit went out for a position already closed"
    )
    assert SYMBOL not in lv.engine.trades
    assert cut.not_closed == ()  # flat already: nothing left to close (counted as closed)


async def live_with_state(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str] | None = None
) -> tuple[Live, SlowReads, TradingStateService]:
    """``protected``, with the trading state the engine's gate reads."""
    built: list[TradingStateService] = []
    real = TradingStateService

    def keep(*args: object, **kwargs: object) -> TradingStateService:
        built.append(real(*args, **kwargs))  # type: ignore[arg-type]
        return built[-1]

    monkeypatch.setattr(venue_sync_tests, "TradingStateService", keep)
    lv, venue = await protected(monkeypatch, tmp_path, env)
    [state] = built
    return lv, venue, state


def entry_orders(venue: SlowReads) -> list[str]:
    return [c.args[0].symbol for c in venue.calls_to("create_order") if c.args[0].tag == "entry"]


async def test_a_halt_flatten_while_an_entry_is_in_flight_and_a_sync_runs_closes_each_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lv, venue, state = await live_with_state(monkeypatch, tmp_path)
    venue.entries_fill_at = D(100)  # a market entry fills as the venue takes it
    answer = venue.hang(ETH, "create_order")
    eth = asyncio.create_task(lv.engine.on_candle(ETH, quiet(0)))
    assert await until(lambda: venue.waiting), "ETH's entry order never went out"
    sync = asyncio.create_task(lv.engine.sync_with_venue())

    async def halt_flatten() -> ExposureCut:
        await state.set(TradingState.HALTED, reason="test", actor="op")
        halted.set()
        return await lv.engine.reduce_exposure(0.0, "/halt flatten")

    halted = asyncio.Event()
    command = asyncio.create_task(halt_flatten())
    sol = asyncio.create_task(lv.engine.on_candle(SOL, quiet(0)))
    for _ in range(50):
        await asyncio.sleep(0)
    assert not halted.is_set(), "the halt was acknowledged before ETH's entry was answered"
    assert await until(sync.done), "the sync waited for ETH's entry order"

    answer.set()
    await asyncio.gather(eth, sol)
    cut = await command
    assert entry_orders(venue) == [SYMBOL, ETH], "an entry went out after the halt"
    assert sorted(cut.closed) == [SYMBOL, ETH] and cut.not_closed == ()
    venue.fill_market_exits(D(100))
    for _ in range(3):
        await lv.engine.sync_with_venue()
    for symbol in (SYMBOL, ETH):
        assert len(exits_of(venue, symbol)) == 1, f"{symbol} left at market more than once"
    eth_entry_fills = [
        e for e in lv.events if isinstance(e, OrderFilled) and e.client_order_id == ETH_ENTRY
    ]
    amount = venue.orders[ETH_ENTRY].request.amount
    assert [e.amount for e in eth_entry_fills] == [amount]  # counted once
    assert not venue.positions
    assert lv.engine.trades == {}
    assert len(lv.engine.closed_trades) == 2


async def test_five_symbols_entering_at_once_on_slow_reads_open_no_more_than_the_limit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = {**NO_CORRELATION, "QT__RISK__MAX_OPEN_POSITIONS": "2"}
    env["QT__RISK__MAX_TOTAL_EXPOSURE_PCT"] = "10"  # only the position limit holds them back
    lv, venue = await protected(monkeypatch, tmp_path, env)  # BTC holds one of the two
    answer = venue.hang_reads()
    others = [ETH, SOL, "XRP/USDT", "ADA/USDT", "DOT/USDT"]
    tasks = [asyncio.create_task(lv.engine.on_candle(s, quiet(0))) for s in others]
    assert await until(lambda: venue.reads_waiting), "no entry read the account"
    for _ in range(50):
        await asyncio.sleep(0)
    assert venue.reads_waiting == 1  # one entry decides at a time
    answer.set()
    await asyncio.gather(*tasks)
    # Not filled yet (a venue slow to fill a market order): each pending entry counts.
    opened = [s for s in entry_orders(venue) if s != SYMBOL]
    assert len(opened) == 1, f"more entries than the position limit: {opened}"
    for cid, order in list(venue.orders.items()):
        if order.request.tag == "entry" and order.is_open:
            venue.script_fill(cid, D(100))
    await lv.engine.sync_with_venue()
    assert len({p.symbol for p in venue.positions}) == 2


async def test_two_syncs_at_once_on_a_fresh_fill_place_one_stop_and_count_the_fill_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lv = await live(monkeypatch, tmp_path, venue_class=SlowReads, env=NO_CORRELATION)
    venue = lv.venue
    await lv.engine.on_candle(ETH, quiet(0))
    venue.script_fill(ENTRY, D(100))
    venue.script_fill(ETH_ENTRY, D(100))
    syncs = [asyncio.create_task(lv.engine.sync_with_venue()) for _ in range(8)]
    published = await asyncio.gather(*syncs)
    assert sum(published) == 2  # each fill heard by one sync
    for symbol in (SYMBOL, ETH):
        assert len(stop_of(venue, symbol)) == 1
        placed = [
            c
            for c in venue.calls_to("create_order")
            if c.args[0].symbol == symbol and c.args[0].stop_price
        ]
        assert len(placed) == 1, f"{symbol}'s stop sent {len(placed)} times"
    fills_heard = [e for e in lv.events if isinstance(e, OrderFilled)]
    assert sorted(e.client_order_id for e in fills_heard) == sorted([ENTRY, ETH_ENTRY])


async def test_a_sync_cancelled_while_it_holds_symbols_locks_leaves_them_free(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lv = await live(monkeypatch, tmp_path, venue_class=SlowReads, env=NO_CORRELATION)
    venue = lv.venue
    assert isinstance(venue, SlowReads)
    await lv.engine.on_candle(ETH, quiet(0))
    venue.script_fill(ENTRY, D(100))
    venue.script_fill(ETH_ENTRY, D(100))
    answer = venue.hang(SYMBOL)  # BTC's reconcile hangs at the venue
    sync = asyncio.create_task(lv.engine.sync_with_venue())
    assert await until(lambda: stop_of(venue, ETH)), "ETH's reconcile never ran"
    assert await until(lambda: venue.waiting)
    sync.cancel()  # the process stops
    with pytest.raises(asyncio.CancelledError):
        await sync
    answer.set()
    # Nothing is left holding BTC: a cycle of it and the next sync run to their end.
    await asyncio.wait_for(lv.engine.on_candle(SYMBOL, quiet(1)), 5)
    await asyncio.wait_for(lv.engine.sync_with_venue(), 5)
    assert len(stop_of(venue, SYMBOL)) == 1
    btc_fills = [e for e in lv.events if isinstance(e, OrderFilled) and e.client_order_id == ENTRY]
    assert len(btc_fills) == 1


async def test_an_entry_cancelled_while_it_waits_for_the_decision_to_open_leaves_its_symbol_free(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lv, venue = await protected(monkeypatch, tmp_path)
    answer = venue.hang(ETH, "create_order")
    eth = asyncio.create_task(lv.engine.on_candle(ETH, quiet(0)))
    assert await until(lambda: venue.waiting), "ETH's entry order never went out"
    sol = asyncio.create_task(lv.engine.on_candle(SOL, quiet(0)))
    for _ in range(20):
        await asyncio.sleep(0)
    sol.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sol
    answer.set()
    await eth
    await asyncio.wait_for(lv.engine.on_candle(SOL, quiet(1)), 5)  # SOL's lock is free
    assert SOL not in lv.engine.trades and SOL not in entry_orders(venue)  # nothing was sent
    assert await asyncio.wait_for(lv.engine.sync_with_venue(), 5) == 0


async def test_a_halt_waiting_for_one_symbols_entry_holds_no_other_symbols_fresh_stop_back(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lv, venue, trading = await live_with_state(monkeypatch, tmp_path)  # BTC protected
    answer = venue.hang(ETH, "create_order")
    eth = asyncio.create_task(lv.engine.on_candle(ETH, quiet(0)))
    assert await until(lambda: venue.waiting), "ETH's entry order never went out"
    halt = asyncio.create_task(trading.set(TradingState.HALTED, reason="test", actor="op"))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not halt.done()  # it waits for ETH's entry, checked before it
    # BTC's take-profit 1 fills: its stop moves while the halt waits for ETH's entry.
    venue.script_fill(TP1, D("101.95"))
    sync = asyncio.create_task(lv.engine.sync_with_venue())
    assert await until(lambda: [o.request.amount for o in stop_of(venue, SYMBOL)] == [D(35)]), (
        "BTC's moved stop waited for the halt behind ETH's entry"
    )
    answer.set()
    await asyncio.gather(eth, halt, sync)
    assert await trading.current() is TradingState.HALTED
    assert entry_orders(venue) == [SYMBOL, ETH]


async def test_a_flatten_closes_a_position_while_another_symbols_waiting_entry_is_busy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lv, venue = await protected(monkeypatch, tmp_path)
    await lv.engine.on_candle(ETH, quiet(0))  # ETH's entry waits for its fill
    answer = venue.hang(ETH, "fetch_order")
    sync = asyncio.create_task(lv.engine.sync_with_venue())  # stuck asking about ETH's entry
    assert await until(lambda: venue.waiting)

    flatten = asyncio.create_task(lv.engine.reduce_exposure(0.0, "test"))
    assert await until(lambda: exits_of(venue, SYMBOL)), "BTC's close waited for ETH's venue"
    assert not flatten.done()

    answer.set()
    await sync
    cut = await flatten
    assert cut.closed == (SYMBOL,) and cut.not_closed == ()
    assert not venue.orders[ETH_ENTRY].is_open  # ETH's waiting entry canceled


async def test_a_flatten_says_which_waiting_entry_the_venue_did_not_cancel_and_closes_the_rest(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lv, venue = await protected(monkeypatch, tmp_path)
    await lv.engine.on_candle(ETH, quiet(0))  # ETH's entry waits for its fill
    cancel = venue.cancel_order

    async def eth_times_out(client_order_id: str, symbol: str) -> Order:
        if symbol == ETH:
            raise TemporaryError("timeout")
        return await cancel(client_order_id, symbol)

    monkeypatch.setattr(venue, "cancel_order", eth_times_out)
    cut = await lv.engine.reduce_exposure(0.0, "test")
    assert cut.closed == (SYMBOL,)
    [why] = cut.not_closed
    assert why.startswith(f"{ETH}: its waiting entry was not canceled") and "timeout" in why
    assert venue.orders[ETH_ENTRY].is_open  # asked again by the next cycle or sync
