"""One symbol's slow order work holds up no other symbol's: each symbol's trade work holds its
own lock (``core.services.engine_locks``), and only the decision to open is shared.

The venue is ``SlowSymbol``: the live races' ``ReduceOnlyVenue`` whose order calls for one
symbol wait until the test answers them (a venue timing out on them, retried with backoff).
BTC/USDT's entry (50 at 100, candle 0) went out before each test; ETH/USDT and SOL/USDT
enter on the same candle.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from decimal import Decimal as D
from pathlib import Path

import pytest

from core.domain.enums import OrderType
from core.domain.events import OrderDenied
from core.domain.orders import Order, OrderRequest
from core.services.execution import client_order_id
from tests.unit.services.engine_harness import SYMBOL, at
from tests.unit.services.test_engine_live_races import NO_CORRELATION, ReduceOnlyVenue
from tests.unit.services.test_engine_venue_sync import ENTRY, STOP, TP1, Live, live, quiet

ETH, SOL = "ETH/USDT", "SOL/USDT"
ETH_ENTRY = client_order_id(ETH, at(0), "e")
SOL_ENTRY = client_order_id(SOL, at(0), "e")


class SlowSymbol(ReduceOnlyVenue):
    """Order calls (create, cancel, fetch) for ``slow`` wait until ``answer`` is set. Counts
    the calls of each symbol under way at once; with ``entries_fill_at`` a market entry fills
    as it is created (as a real venue fills one), at that price."""

    slow: str | None = None
    slow_calls: tuple[str, ...] = ()
    answer: asyncio.Event | None = None
    entries_fill_at: D | None = None

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.under_way: Counter[str] = Counter()
        self.most_at_once: Counter[str] = Counter()
        self.waiting = 0

    async def _call(self, symbol: str, method: str) -> None:
        self.under_way[symbol] += 1
        self.most_at_once[symbol] = max(self.most_at_once[symbol], self.under_way[symbol])
        slow = symbol == self.slow and method in self.slow_calls
        if slow and self.answer is not None and not self.answer.is_set():
            self.waiting += 1
            try:
                await self.answer.wait()
            finally:
                self.waiting -= 1
        await asyncio.sleep(0)  # every answer lets the other tasks run

    async def create_order(self, request: OrderRequest) -> Order:
        await self._call(request.symbol, "create_order")
        try:
            entry = request.type is OrderType.MARKET and not request.reduce_only
            if entry and self.entries_fill_at is not None:
                self.script_fill(request.client_order_id, self.entries_fill_at)
            return await super().create_order(request)
        finally:
            self.under_way[request.symbol] -= 1

    async def cancel_order(self, client_order_id: str, symbol: str) -> Order:
        await self._call(symbol, "cancel_order")
        try:
            return await super().cancel_order(client_order_id, symbol)
        finally:
            self.under_way[symbol] -= 1

    async def fetch_order(self, client_order_id: str, symbol: str) -> Order:
        await self._call(symbol, "fetch_order")
        try:
            return await super().fetch_order(client_order_id, symbol)
        finally:
            self.under_way[symbol] -= 1

    def hang(self, symbol: str, *calls: str) -> asyncio.Event:
        """Make ``symbol``'s order calls (these ``calls`` only, if named) wait from now on;
        return the event that answers them."""
        self.slow, self.answer = symbol, asyncio.Event()
        self.slow_calls = calls or ("create_order", "cancel_order", "fetch_order")
        return self.answer

    def asked_about(self, symbol: str) -> int:
        """Return how many order calls named ``symbol`` so far."""
        return sum(1 for c in self.calls if symbol in c.args or _request_of(c.args, symbol))


def _request_of(args: tuple[object, ...], symbol: str) -> bool:
    return any(isinstance(a, OrderRequest) and a.symbol == symbol for a in args)


async def until(done: Callable[[], object], rounds: int = 200) -> bool:
    """Let the loop run until ``done()`` is true (the fakes answer at once); return it."""
    for _ in range(rounds):
        if done():
            return True
        await asyncio.sleep(0)
    return bool(done())


async def slow_venue(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str] | None = None
) -> tuple[Live, SlowSymbol]:
    lv = await live(monkeypatch, tmp_path, venue_class=SlowSymbol, env=env or NO_CORRELATION)
    assert isinstance(lv.venue, SlowSymbol)
    return lv, lv.venue


def stop_of(venue: SlowSymbol, symbol: str) -> list[Order]:
    return [
        o
        for o in venue.orders.values()
        if o.symbol == symbol and o.is_open and o.request.stop_price
    ]


async def test_a_fill_is_protected_while_another_symbols_entry_order_hangs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lv, venue = await slow_venue(monkeypatch, tmp_path)
    answer = venue.hang(ETH)
    eth = asyncio.create_task(lv.engine.on_candle(ETH, quiet(0)))
    assert await until(lambda: venue.waiting), "ETH's entry order never went out"
    venue.script_fill(ENTRY, D(100))  # BTC's entry fills meanwhile
    asked = venue.asked_about(ETH)

    sync = asyncio.create_task(lv.engine.sync_with_venue())
    assert await until(sync.done), "the venue sync waited for ETH's entry order"
    assert STOP in lv.open_cids()  # BTC's fill is protected already
    assert venue.asked_about(ETH) == asked  # ETH's entry is in flight: left to the next sync
    assert not eth.done() and lv.engine.trades[ETH].plan is None

    answer.set()
    await eth
    amount = venue.orders[ETH_ENTRY].request.amount
    assert amount > 0
    venue.script_fill(ETH_ENTRY, D(100))
    assert await lv.engine.sync_with_venue() == 1  # ETH's fill, heard by the next sync
    assert [o.request.amount for o in stop_of(venue, ETH)] == [amount]


async def test_a_fill_is_protected_while_the_same_sync_waits_on_another_symbols_orders(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lv, venue = await slow_venue(monkeypatch, tmp_path)
    await lv.engine.on_candle(ETH, quiet(0))  # ETH's entry goes out
    venue.script_fill(ENTRY, D(100))
    await lv.engine.sync_with_venue()  # BTC's ladder and stop go out
    answer = venue.hang(SYMBOL)  # from now on the venue does not answer about BTC
    venue.script_fill(ETH_ENTRY, D(100))

    sync = asyncio.create_task(lv.engine.sync_with_venue())
    assert await until(lambda: stop_of(venue, ETH)), "ETH's stop waited for BTC's orders"
    assert not sync.done() and venue.waiting == 1  # BTC's reconcile still waits
    assert lv.engine.trades[ETH].plan is not None

    answer.set()
    assert await sync == 1  # ETH's fill; BTC's orders unchanged
    assert STOP in lv.open_cids()


async def test_a_fill_is_protected_while_another_symbols_fill_is_handled_at_a_slow_venue(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lv, venue = await slow_venue(monkeypatch, tmp_path)
    await lv.engine.on_candle(ETH, quiet(0))
    venue.script_fill(ENTRY, D(100))
    await lv.engine.sync_with_venue()
    answer = venue.hang(SYMBOL, "cancel_order")
    venue.script_fill(TP1, D("101.95"))  # its handler moves BTC's stop: the cancel hangs
    venue.script_fill(ETH_ENTRY, D(100))

    sync = asyncio.create_task(lv.engine.sync_with_venue())
    assert await until(lambda: stop_of(venue, ETH)), "ETH's fill waited for BTC's fill handler"
    assert not sync.done() and venue.waiting == 1

    answer.set()
    assert await sync == 2
    assert [o.request.amount for o in stop_of(venue, SYMBOL)] == [D(35)]


async def test_a_cycle_waits_for_the_sync_working_on_its_trade_and_no_other(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lv, venue = await slow_venue(monkeypatch, tmp_path)
    venue.script_fill(ENTRY, D(100))
    await lv.engine.sync_with_venue()
    answer = venue.hang(SYMBOL)
    venue.script_fill(TP1, D("101.95"))  # the sync moves BTC's stop once it hears of it
    sync = asyncio.create_task(lv.engine.sync_with_venue())
    assert await until(lambda: venue.waiting)

    btc = asyncio.create_task(lv.engine.on_candle(SYMBOL, quiet(1)))
    eth = asyncio.create_task(lv.engine.on_candle(ETH, quiet(0)))
    assert await until(eth.done), "ETH's cycle waited for BTC's sync"
    assert ETH_ENTRY in venue.orders
    assert not btc.done() and venue.waiting == 1  # only the sync's call on BTC is out

    answer.set()
    await sync
    await btc
    assert venue.most_at_once[SYMBOL] == 1  # never two tasks on BTC's orders at once
    assert [o.request.amount for o in stop_of(venue, SYMBOL)] == [D(35)]  # moved, once


async def test_a_sync_leaves_a_trade_whose_cycle_is_at_the_venue_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lv, venue = await live_with_exit(monkeypatch, tmp_path)
    answer = venue.hang(SYMBOL)
    btc = asyncio.create_task(lv.engine.on_candle(SYMBOL, quiet(1)))  # its exit signal
    assert await until(lambda: venue.waiting), "BTC's exit never reached the venue"
    asked = venue.asked_about(SYMBOL)

    for _ in range(2):
        sync = asyncio.create_task(lv.engine.sync_with_venue())
        assert await until(sync.done), "the venue sync waited for BTC's cycle"
    assert venue.asked_about(SYMBOL) == asked  # the cycle is working BTC: not touched
    answer.set()
    await btc
    await lv.engine.sync_with_venue()
    assert venue.most_at_once[SYMBOL] == 1
    exits = [o for o in venue.orders.values() if o.request.tag.startswith("EXIT")]
    assert [o.request.amount for o in exits] == [D(50)]  # one market exit, for it all


async def live_with_exit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[Live, SlowSymbol]:
    lv = await live(
        monkeypatch, tmp_path, venue_class=SlowSymbol, env=NO_CORRELATION, exit_long={at(1)}
    )
    assert isinstance(lv.venue, SlowSymbol)
    lv.venue.script_fill(ENTRY, D(100))
    await lv.engine.sync_with_venue()
    return lv, lv.venue


async def test_entries_of_two_symbols_racing_for_the_last_position_open_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # room for three positions in the exposure: only the position limit holds the third back
    env = {**NO_CORRELATION, "QT__RISK__MAX_OPEN_POSITIONS": "2"}
    env["QT__RISK__MAX_TOTAL_EXPOSURE_PCT"] = "3"
    lv, venue = await slow_venue(monkeypatch, tmp_path, env)
    venue.script_fill(ENTRY, D(100))
    await lv.engine.sync_with_venue()  # BTC holds one of the two
    venue.entries_fill_at = D(100)
    answer = venue.hang(ETH)

    eth = asyncio.create_task(lv.engine.on_candle(ETH, quiet(0)))
    sol = asyncio.create_task(lv.engine.on_candle(SOL, quiet(0)))
    assert await until(lambda: venue.waiting), "ETH's entry order never went out"
    for _ in range(50):
        await asyncio.sleep(0)
    assert not sol.done() and SOL not in lv.engine.trades  # waits for ETH's decision

    answer.set()
    await asyncio.gather(eth, sol)
    assert ETH_ENTRY in venue.orders and SOL_ENTRY not in venue.orders
    [denied] = [e for e in lv.events if isinstance(e, OrderDenied)]
    assert (denied.symbol, denied.reason) == (SOL, "max_open_positions")
    assert sorted(p.symbol for p in venue.positions) == [SYMBOL, ETH]


async def test_a_flatten_closes_a_free_symbol_at_once_and_a_busy_one_once_it_is_free(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lv, venue = await slow_venue(monkeypatch, tmp_path)
    await lv.engine.on_candle(ETH, quiet(0))
    venue.script_fill(ENTRY, D(100))
    venue.script_fill(ETH_ENTRY, D(100))
    await lv.engine.sync_with_venue()  # both protected
    answer = venue.hang(SYMBOL)
    venue.script_fill(TP1, D("101.95"))
    sync = asyncio.create_task(lv.engine.sync_with_venue())  # stuck on BTC's orders
    assert await until(lambda: venue.waiting)

    flatten = asyncio.create_task(lv.engine.reduce_exposure(0.0, "test"))
    assert await until(lambda: exits_of(venue, ETH)), "ETH's close waited for BTC's sync"
    assert not flatten.done() and not exits_of(venue, SYMBOL)

    answer.set()
    await sync
    cut = await flatten
    assert set(cut.closed) == {SYMBOL, ETH} and cut.not_closed == ()
    assert [o.request.amount for o in exits_of(venue, SYMBOL)] == [D(35)]  # after TP1
    assert venue.most_at_once[SYMBOL] == 1


def exits_of(venue: SlowSymbol, symbol: str) -> list[Order]:
    return [
        o for o in venue.orders.values() if o.symbol == symbol and o.request.tag.startswith("EXIT")
    ]
