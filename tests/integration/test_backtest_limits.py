"""The pre-trade limits in a backtest on hand-made candles: their denials are counted in the
result (and the report), the same in the fast and the full replay, and the daily halt runs on
simulated days."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.backtest import BacktestResult, run_backtest
from bot.report import denials_line, write_report
from core.domain.market import CandleSeries
from tests.integration.scripted import FLAT, T0_MS, Row, RowScript, series, settings_with

QUARTER_MS = 900_000


async def both(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    candles: dict[str, CandleSeries],
    script: RowScript,
    **env: str,
) -> BacktestResult:
    """Run the fast and the full replay; check they agree; return the fast one."""
    settings = settings_with(monkeypatch, tmp_path, **env)
    fast = await run_backtest(settings, candles, provider=script)
    full = await run_backtest(settings, candles, provider=script, fast=False)
    assert fast.denials == full.denials
    assert [t.closed_ms for t in fast.trades] == [t.closed_ms for t in full.trades]
    return fast


async def test_a_symbol_cools_down_after_its_trade_closes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # 15m candles: in at row 1 (fills at row 2's open), out on the exit signal of row 3 (fills
    # at row 4's open, T0 + 60 min). Entry signals at row 4 (decided 15 min after the close)
    # and row 8 (75 min after): the first is denied by the 1 h cooldown, the second goes.
    rows: list[Row] = [FLAT] * 12
    script = RowScript({1: 1, 4: 1, 8: 1}, exits=[3])
    res = await both(
        monkeypatch,
        tmp_path,
        {"BTC/USDT": series("BTC/USDT", rows, tf="15m", tf_ms=QUARTER_MS)},
        script,
    )
    assert res.denials == {"symbol_cooldown": 1}
    assert len(res.trades) == 1 and res.trades[0].closed_ms == T0_MS + 4 * QUARTER_MS
    assert res.open_positions == 1  # the entry of row 8
    files = write_report(
        res.metrics,
        res.trades,
        res.curve,
        tmp_path,
        run_name="cooldown",
        charts=False,
        denials=res.denials,
    )
    assert json.loads(files.json_path.read_text())["denials"] == {"symbol_cooldown": 1}
    assert denials_line(res.denials) == "1 order(s) denied by the risk gate: symbol_cooldown 1"
    off = await both(
        monkeypatch,
        tmp_path,
        {"BTC/USDT": series("BTC/USDT", rows, tf="15m", tf_ms=QUARTER_MS)},
        RowScript({1: 1, 4: 1}, exits=[3]),
        QT__RISK__SYMBOL_COOLDOWN_S="0",
    )
    assert off.denials == {} and off.open_positions == 1  # row 4's entry went


async def test_entries_per_hour_deny_the_fifth_entry_of_one_candle(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Five symbols signal on row 30 (flat history: a price that does not move correlates with
    # nothing, and 30 candles are enough to tell). Small positions, so only the hourly limit
    # of 4 entries binds.
    rows: list[Row] = [FLAT] * 34
    symbols = [f"S{i}/USDT" for i in range(5)]
    res = await both(
        monkeypatch,
        tmp_path,
        {s: series(s, rows) for s in symbols},
        RowScript({30: 1}),
        QT__RISK__RISK_PER_TRADE="0.001",
        QT__RISK__MAX_OPEN_POSITIONS="10",
    )
    assert res.denials == {"max_entries_per_hour": 1}
    assert res.open_positions == 4


async def test_the_daily_loss_halts_the_day_and_the_next_utc_day_trades_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # 1h candles from midnight. Half the equity enters on row 1; row 3 gaps 20 % below it, so
    # the stop fills there (-10 % of equity > the 5 % daily limit): trading halts. The entry
    # signal of row 10 (the same day) is denied by the halt; that of row 26 (the next) goes.
    gap: Row = (80.0, 80.2, 79.8, 80.0)
    rows: list[Row] = [FLAT] * 3 + [gap] * 31
    res = await both(
        monkeypatch,
        tmp_path,
        {"BTC/USDT": series("BTC/USDT", rows)},
        RowScript({1: 1, 10: 1, 26: 1}),
    )
    assert len(res.trades) == 1 and res.trades[0].pnl < -500  # over 5 % of 10_000
    assert res.denials == {"halted": 1}
    assert res.open_positions == 1  # the next day's entry
