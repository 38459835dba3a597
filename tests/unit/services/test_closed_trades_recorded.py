"""Every closed trade is stored in the trades table before it is announced; a database that
refuses the write costs neither trading nor the trade; a new process shows what closed before.

The venue is the test suite's FakeExchange (see ``test_engine_venue_sync``): the engine enters
50 at 100 on candles 0 and 2, and each trade is stopped out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal as D
from pathlib import Path
from types import SimpleNamespace

import pytest

from bot.trading import build_engine, policy_from
from core.clock import SimClock
from core.domain.enums import TradingState
from core.domain.events import Event, TradeClosed
from core.domain.policy import Policy
from core.domain.portfolio import EquitySnapshot
from core.domain.trades import ClosedTrade
from core.errors import StorageUnavailable
from core.ports import StateKey, Storage, TradeRepo
from core.services.bus import EventBus
from core.services.commands import CommandCore, CommandServices
from core.services.engine import Engine
from core.services.execution import client_order_id
from core.services.trading_state import TradingStateService
from storage.memory import MemoryStorage
from storage.repositories import SqlStorage
from tests.fakes import FakeExchange, FlakyState
from tests.unit.services.engine_harness import SYMBOL, T0_MS, ScriptedProvider, at, clean_settings
from tests.unit.services.test_engine_venue_sync import quiet

ENTRY0, STOP0 = (client_order_id(SYMBOL, at(0), tag) for tag in ("e", "s0"))
ENTRY2, STOP2 = (client_order_id(SYMBOL, at(2), tag) for tag in ("e", "s0"))


class FlakyTrades:
    """A trades table whose writes fail while ``down`` (a database locked past its timeout)."""

    def __init__(self, inner: TradeRepo) -> None:
        self.inner = inner
        self.down = False

    async def add(self, trade: ClosedTrade) -> bool:
        if self.down:
            raise StorageUnavailable("the database cannot be used now: database is locked")
        return await self.inner.add(trade)


@dataclass
class Rig:
    engine: Engine
    venue: FakeExchange
    clock: SimClock
    events: list[Event]
    trading_state: TradingStateService


def rig(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    storage: Storage,
    trades: object,
    venue: FakeExchange | None = None,
    state: object | None = None,
) -> Rig:
    clock = venue.clock if venue is not None else SimClock(T0_MS)
    venue = venue or FakeExchange(balances={"USDT": D(10_000)}, clock=clock, track_positions=True)
    bus = EventBus(sink=storage.events.append)
    events: list[Event] = []

    async def record(e: Event) -> None:
        events.append(e)

    bus.subscribe("*", record)
    trading_state = TradingStateService(storage.state, bus, clock)  # type: ignore[arg-type]
    engine = build_engine(
        clean_settings(monkeypatch, tmp_path),
        clock=clock,  # type: ignore[arg-type]
        bus=bus,
        exchange=venue,
        trading_state=trading_state,
        provider=ScriptedProvider(entries={at(0): 1, at(2): 1}),
        state=state or storage.state,  # type: ignore[arg-type]
        trades=trades,  # type: ignore[arg-type]
    )
    return Rig(engine, venue, clock, events, trading_state)  # type: ignore[arg-type]


async def round_trip(r: Rig, candle: int, entry: str, stop: str) -> None:
    """Enter on ``candle`` as it closes, fill at 100, stop out at 98 at once."""
    r.clock.advance_to(at(candle + 1))
    await r.engine.on_candle(SYMBOL, quiet(candle))
    assert entry in r.venue.orders
    r.venue.script_fill(entry, D(100))
    await r.engine.sync_with_venue()
    r.venue.script_fill(stop, D(98))
    await r.engine.sync_with_venue()
    assert SYMBOL not in r.engine.trades


async def test_a_closed_trade_is_stored_before_it_is_announced(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    storage = MemoryStorage()
    r = rig(monkeypatch, tmp_path, storage, storage.trades)
    stored_when_announced: list[list[ClosedTrade]] = []

    async def look(_: Event) -> None:
        stored_when_announced.append(await storage.trades.list_closed())

    r.engine._bus.subscribe(TradeClosed.topic, look)  # type: ignore[attr-defined]
    await round_trip(r, 0, ENTRY0, STOP0)

    (closed,) = r.engine.closed_trades
    assert closed.exit_reason == "SL" and closed.pnl < 0
    assert stored_when_announced == [[closed]]  # every field, before anyone heard of it
    assert await storage.trades.list_closed() == [closed]


async def test_a_refused_write_is_logged_trading_goes_on_and_the_next_close_stores_both(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = MemoryStorage()
    flaky = FlakyTrades(storage.trades)
    r = rig(monkeypatch, tmp_path, storage, flaky)

    flaky.down = True
    with caplog.at_level(logging.WARNING):
        await round_trip(r, 0, ENTRY0, STOP0)
    (first,) = r.engine.closed_trades  # kept in memory
    assert [e.trade_id for e in r.events if isinstance(e, TradeClosed)] == [first.trade_id]
    assert await storage.trades.list_closed() == []
    assert f"closed trade {first.trade_id} not stored" in caplog.text
    assert await r.trading_state.current() is TradingState.ACTIVE  # no halt for it

    flaky.down = False
    await round_trip(r, 2, ENTRY2, STOP2)  # trading went on: a new entry, a new close
    assert await storage.trades.list_closed() == r.engine.closed_trades
    assert len(r.engine.closed_trades) == 2


async def entered_on_a_failing_disk(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[Rig, MemoryStorage, FlakyTrades, FlakyState]:
    """A rig whose trades table and state store fail while ``down`` (a full disk), its
    entry (decided on candle 0) filled at 100 and its exit plan working at the venue."""
    storage = MemoryStorage()
    trades = FlakyTrades(storage.trades)
    kv = FlakyState(storage.state, "the database cannot be used now: disk is full")
    r = rig(monkeypatch, tmp_path, storage, trades, state=kv)
    r.clock.advance_to(at(1))
    await r.engine.on_candle(SYMBOL, quiet(0))
    r.venue.script_fill(ENTRY0, D(100))
    await r.engine.sync_with_venue()
    return r, storage, trades, kv


async def test_a_stop_filled_while_the_database_refuses_writes_still_records_the_round_trip(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Flat, the trade cancels its take-profits; each cancel is written ahead and that write
    fails. Found by the chaos harness: the trade was marked finished, the first cancel's write
    raised, and the round trip was never recorded (no TradeClosed, no row, ever)."""
    r, storage, flaky, kv = await entered_on_a_failing_disk(monkeypatch, tmp_path)
    legs = [cid for name, cid in r.engine.trades[SYMBOL].working.items() if name != "SL"]
    assert legs  # take-profits working beside the stop
    flaky.down = kv.down = True
    r.venue.script_fill(STOP0, D(98))
    await r.engine.sync_with_venue()

    [closed] = r.engine.closed_trades
    assert closed.exit_reason == "SL" and closed.amount > 0
    assert [e.trade_id for e in r.events if isinstance(e, TradeClosed)] == [closed.trade_id]
    assert await storage.trades.list_closed() == []  # kept in memory meanwhile
    await r.engine.sync_with_venue()  # still refused: the row waits
    flaky.down = kv.down = False
    await r.engine.sync_with_venue()  # the database is back: the trade's row is stored
    assert await storage.trades.list_closed() == [closed]
    assert SYMBOL not in r.engine.trades
    assert all(r.venue.orders[cid].status.value == "canceled" for cid in legs)  # none left


async def test_without_a_trades_table_the_trades_stay_in_memory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    storage = MemoryStorage()
    r = rig(monkeypatch, tmp_path, storage, None)  # a backtest's wiring
    await round_trip(r, 0, ENTRY0, STOP0)
    assert len(r.engine.closed_trades) == 1
    assert await storage.trades.list_closed() == []


def commands(
    engine: Engine, storage: Storage, clock: SimClock, trades: object, policy: Policy
) -> CommandCore:
    """The command core over ``engine`` (the parts the P&L commands and the report read)."""
    bus = EventBus()
    services = CommandServices(
        clock=clock,
        bus=bus,
        storage=storage,
        engine=engine,
        exchange=None,  # type: ignore[arg-type]
        trading_state=TradingStateService(storage.state, bus, clock),
        policy=SimpleNamespace(current=lambda: policy),  # type: ignore[arg-type]
        portfolio=SimpleNamespace(  # type: ignore[arg-type]
            last=EquitySnapshot(ts_ms=clock.now_ms(), equity=D(9_900), cash=D(9_900))
        ),
        quote="USDT",
        mode_label="run",
        trades=trades,  # type: ignore[arg-type]
    )
    return CommandCore(services)


async def test_a_new_process_on_the_same_database_shows_the_trades_closed_before(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    policy = policy_from(clean_settings(monkeypatch, tmp_path))
    url = f"sqlite+aiosqlite:///{tmp_path}/qt.sqlite3"
    storage = SqlStorage(url)
    await storage.start()
    first = rig(monkeypatch, tmp_path, storage, storage.trades)
    await round_trip(first, 0, ENTRY0, STOP0)
    await round_trip(first, 2, ENTRY2, STOP2)
    first.clock.advance_to(at(4))  # an hour after the last close
    said = commands(first.engine, storage, first.clock, None, policy)  # this process's own memory
    before = [await said.trades(5), await said.profit(), await said.profit(1), await said.daily(2)]
    report_before = await said.daily_report()
    await storage.stop()

    # The restart: a new storage, a new engine, the same database file and venue.
    again = SqlStorage(url)
    await again.start()
    try:
        second = rig(monkeypatch, tmp_path, again, again.trades, venue=first.venue)
        await second.engine.start()
        assert second.engine.closed_trades == []  # nothing closed in this process yet
        core = commands(second.engine, again, second.clock, again.trades, policy)
        after = [
            await core.trades(5),
            await core.profit(),
            await core.profit(1),
            await core.daily(2),
        ]
        assert after == before
        assert after[0].title == "the 2 newest closed trade(s)" and len(after[0].lines) == 2
        assert after[1].lines[0].startswith("2 trades, 0 won")
        assert await core.daily_report() == report_before
        newest = await core.trades(1)
        assert newest.title == "the 1 newest closed trade(s)"
        assert newest.lines == before[0].lines[:1]
        # Without the table, a new process knows nothing of them (as before this change).
        forgetful = commands(second.engine, again, second.clock, None, policy)
        assert (await forgetful.trades(5)).title == "no closed trade yet"
    finally:
        await again.stop()


class Killed(BaseException):
    """The process dies here (SIGKILL): nothing after it runs, no handler sees it."""


class DiesOnAdd:
    """A trades table whose process is killed just before (``before``) or just after the
    row of a round trip is stored."""

    def __init__(self, inner: TradeRepo, *, before: bool) -> None:
        self.inner, self.before = inner, before

    async def add(self, trade: ClosedTrade) -> bool:
        if self.before:
            raise Killed
        await self.inner.add(trade)
        raise Killed


@pytest.mark.parametrize("before", [True, False], ids=["before its row", "after its row"])
async def test_a_kill_while_a_round_trip_is_recorded_leaves_it_recorded_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, before: bool
) -> None:
    """Flat, the trade is marked finished and that is written ahead with each take-profit's
    cancel, then its row is stored. Killed in between, the restart restored it finished and
    forgot it once the cancels were confirmed: the round trip was never recorded (found by
    the two-symbol chaos run: "lost fill ... entry venue 1.808 bot 0")."""
    storage = MemoryStorage()
    venue = FakeExchange(balances={"USDT": D(10_000)}, track_positions=True)
    venue.clock.advance_to(T0_MS)
    r = rig(monkeypatch, tmp_path, storage, DiesOnAdd(storage.trades, before=before), venue=venue)
    r.clock.advance_to(at(1))
    await r.engine.on_candle(SYMBOL, quiet(0))
    venue.script_fill(ENTRY0, D(100))
    await r.engine.sync_with_venue()
    trade = r.engine.trades[SYMBOL]
    assert trade.plan is not None
    # a market exit (a signal's): its fill finds the stop and take-profits still working
    await r.engine._exits.market_exit(
        trade, trade.plan.remaining, reason="SIGNAL", reference=D(100)
    )
    exit_cid = next(cid for cid, why in trade.exit_reasons.items() if why == "SIGNAL")
    venue.script_fill(exit_cid, D(101))
    with pytest.raises(Killed):
        await r.engine.sync_with_venue()
    saved = await storage.state.get(StateKey.ENGINE_TRADES)
    assert saved is not None and '"finished": true' in saved  # written ahead with a cancel

    again = rig(monkeypatch, tmp_path, storage, storage.trades, venue=venue)
    await again.engine.start()
    [closed] = await storage.trades.list_closed()
    assert closed.trade_id == ENTRY0 and closed.exit_reason == "SIGNAL"
    # announced by the restart (the killed process died before its announcement)
    assert [e.trade_id for e in again.events if isinstance(e, TradeClosed)] == [ENTRY0]
    await again.engine.sync_with_venue()
    assert SYMBOL not in again.engine.trades
    assert await storage.trades.list_closed() == [closed]
