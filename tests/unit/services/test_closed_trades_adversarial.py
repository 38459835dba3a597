"""Adversarial tests of the closed trades kept in the trades table (issue 13's review): a
refused write then a restart, a replayed close, and /profit, /daily and /trades read around
day boundaries and over many trades. The test that reproduced a defect found in review stays
(it was fixed); the others held up."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D
from pathlib import Path

import pytest

from bot.trading import policy_from
from core.domain.events import TradeClosed
from core.domain.trades import ClosedTrade
from core.ports import StateKey
from core.services.commands import _money
from storage.memory import MemoryStorage
from tests.unit.services.engine_harness import SYMBOL, at, clean_settings
from tests.unit.services.test_closed_trades_recorded import (
    ENTRY0,
    ENTRY2,
    STOP0,
    STOP2,
    FlakyTrades,
    commands,
    rig,
    round_trip,
)
from tests.unit.services.test_engine_venue_sync import quiet

DAY_MS = 86_400_000


async def test_a_refused_write_then_a_restart_before_the_next_close_keeps_the_trade(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    storage = MemoryStorage()
    flaky = FlakyTrades(storage.trades)
    first = rig(monkeypatch, tmp_path, storage, flaky)
    flaky.down = True
    await round_trip(first, 0, ENTRY0, STOP0)
    (closed,) = first.engine.closed_trades
    flaky.down = False  # the database is back before the process stops
    await first.engine.stop()

    second = rig(monkeypatch, tmp_path, storage, storage.trades, venue=first.venue)
    await second.engine.start()
    assert await storage.trades.list_closed() == [closed]


async def test_a_close_replayed_after_a_restart_is_stored_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    storage = MemoryStorage()
    first = rig(monkeypatch, tmp_path, storage, storage.trades)
    first.clock.advance_to(at(1))
    await first.engine.on_candle(SYMBOL, quiet(0))
    first.venue.script_fill(ENTRY0, D(100))
    await first.engine.sync_with_venue()
    # The crash: the trade is stored in the table, the engine's save after it is not.
    before_close = await storage.state.get(StateKey.ENGINE_TRADES)
    assert before_close
    first.venue.script_fill(STOP0, D(98))
    await first.engine.sync_with_venue()
    (closed,) = await storage.trades.list_closed()
    await storage.state.set(StateKey.ENGINE_TRADES, before_close)

    second = rig(monkeypatch, tmp_path, storage, storage.trades, venue=first.venue)
    await second.engine.start()  # the sync replays the stop's fill: the trade closes again
    assert [e.trade_id for e in second.events if isinstance(e, TradeClosed)] == [closed.trade_id]
    assert await storage.trades.list_closed() == [closed]  # one row, the first one


def _trades_closed_at(template: ClosedTrade, closes_ms: list[int]) -> list[ClosedTrade]:
    return [
        replace(template, trade_id=f"t{i}", closed_ms=ms, pnl=D(i + 1))
        for i, ms in enumerate(closes_ms)
    ]


async def test_profit_and_daily_split_exactly_at_midnight_utc(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    storage = MemoryStorage()
    r = rig(monkeypatch, tmp_path, storage, storage.trades)
    await round_trip(r, 0, ENTRY0, STOP0)
    (template,) = await storage.trades.list_closed()
    midnight = (template.closed_ms // DAY_MS + 2) * DAY_MS
    # pnl 1..4: the last ms of yesterday, today's first ms, and one day ago to the ms (out of
    # /profit 1) and a ms after it (in).
    now = midnight + 5 * 3_600_000
    trades = _trades_closed_at(template, [midnight - 1, midnight, now - DAY_MS, now - DAY_MS + 1])
    for t in trades:
        assert await storage.trades.add(t)
    r.clock.advance_to(now)
    core = commands(
        r.engine,
        storage,
        r.clock,
        storage.trades,
        policy_from(clean_settings(monkeypatch, tmp_path)),
    )
    today, yesterday = (await core.daily(2)).lines
    assert today.endswith(f"{_money(D(2))} USDT (1 trades)"), today  # midnight is today's
    assert yesterday.endswith(f"{_money(D(8))} USDT (3 trades)"), yesterday
    profit = await core.profit(1)
    assert profit.lines[0].startswith("3 trades"), profit  # a day ago to the ms is not "in"
    assert profit.title == f"profit in the last 1 day(s): {_money(D(7))} USDT"


async def test_the_newest_fifty_of_many_trades_come_newest_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    storage = MemoryStorage()
    r = rig(monkeypatch, tmp_path, storage, storage.trades)
    await round_trip(r, 0, ENTRY0, STOP0)
    await round_trip(r, 2, ENTRY2, STOP2)
    earlier = await storage.trades.list_closed()
    template = earlier[0]
    many = 20_000
    # Recorded out of closing order (a replay after a restart stores late): ties and all.
    closes = [template.closed_ms + (i * 7919) % (many // 2) for i in range(many)]
    for t in _trades_closed_at(template, closes):
        await storage.trades.add(t)
    core = commands(
        r.engine,
        storage,
        r.clock,
        storage.trades,
        policy_from(clean_settings(monkeypatch, tmp_path)),
    )
    newest = await core.trades(50)
    assert newest.title == "the 50 newest closed trade(s)"
    stored = await storage.trades.list_closed(limit=50)
    assert [t.closed_ms for t in stored] == sorted(closes + [t.closed_ms for t in earlier])[-50:]
    assert newest.lines[0] != newest.lines[-1]
