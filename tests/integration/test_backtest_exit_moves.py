"""The backtest trades the Exit Brain's candle-close moves and reports them: a profit lock, a
maximum holding time and a trailing stop, one trade each on hand-made candles, the same in the
fast replay (quiet candles skipped) as in the full one, in the report's exit-reason table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from bot.backtest import run_backtest
from bot.report import print_report
from core.domain.market import CandleSeries
from core.signals.base import SignalFrame
from tests.integration.scripted import FLAT, Row, RowScript, series, settings_with

ENV = {
    "QT__RISK__RISK_PER_TRADE": "0.02",
    "QT__RISK__MAX_POSITION_NOTIONAL": "5001",
    "QT__RISK__MAX_POSITION_PCT": "1",
    "QT__EXITS__MAX_HOLD_HOURS": "6",
    "QT__EXITS__TRAIL_ATR": "2",
    "QT__EXITS__PROFIT_LOCK_TRIGGER_PCT": "1.5",
    "QT__EXITS__PROFIT_LOCK_PCT": "0.3",
}
FILL: Row = (100, 100.4, 99.8, 100.2)
ROWS: list[Row] = [
    FLAT,
    FLAT,  # 1: enter (fills at 2's open, 100.02)
    FILL,
    (100.2, 101.6, 100.1, 101.4),  # 3: +1.5 % reached: the stop locks +0.3 %
    (101.4, 101.5, 100.0, 100.1),  # 4: back through the lock: PROFIT_LOCK
    FLAT,
    FLAT,  # 6: enter (fills at 7's open)
    *[FLAT] * 6,  # 7-12: 6 h held at 12's close: out at 13's open, MAX_HOLD
    FLAT,
    FLAT,
    FLAT,  # 15: enter (fills at 16's open)
    FILL,
    (100.2, 102.0, 100.1, 101.9),  # 17: TP1 (and the lock)
    (101.9, 103.5, 101.8, 103.3),  # 18: TP2: the last 40 % trails
    (103.3, 104.8, 103.2, 104.6),  # 19: a new high: the trail moves up
    (104.6, 104.7, 103.0, 103.1),  # 20: through the trail: TRAILING_STOP
    *[FLAT] * 4,
]


class ScriptWithAtr(RowScript):
    """The row script with an ATR of 1.0 on every candle (the trail's unit)."""

    def compute(self, series: CandleSeries) -> SignalFrame:
        frame = super().compute(series)
        return SignalFrame(
            ts_ms=frame.ts_ms,
            entry=frame.entry,
            exit_long=frame.exit_long,
            exit_short=frame.exit_short,
            confidence=frame.confidence,
            atr=np.full(len(series), 1.0),
        )


@pytest.mark.parametrize("fast", [True, False])
async def test_each_move_closes_a_trade_under_its_reason_in_the_report(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fast: bool
) -> None:
    settings = settings_with(monkeypatch, tmp_path, **ENV)
    candles = {"BTC/USDT": series("BTC/USDT", ROWS)}
    res = await run_backtest(
        settings, candles, provider=ScriptWithAtr({1: 1, 6: 1, 15: 1}), fast=fast
    )
    assert [t.exit_reason for t in res.trades] == ["PROFIT_LOCK", "MAX_HOLD", "TRAILING_STOP"]
    lock, hold, trail = res.trades
    assert lock.pnl > 0 and [leg.reason for leg in lock.legs] == ["PROFIT_LOCK"]
    assert hold.duration_ms == 6 * 3_600_000
    assert [leg.reason for leg in trail.legs] == ["TP1", "TP2", "TRAILING_STOP"]
    assert trail.legs[-1].price > trail.legs[0].price  # the runner left above TP1
    assert res.open_positions == 0

    console = Console(record=True, width=160)
    print_report(res.metrics, console)
    text = console.export_text()
    rows = {r.reason: r.trades_closed for r in res.metrics.exit_reasons}
    assert rows == {"PROFIT_LOCK": 1, "MAX_HOLD": 1, "TRAILING_STOP": 1, "TP1": 0, "TP2": 0}
    for reason in rows:
        assert reason in text, reason


async def test_the_fast_replay_skips_quiet_candles_and_trades_the_same(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = settings_with(monkeypatch, tmp_path, **ENV)
    candles = {"BTC/USDT": series("BTC/USDT", ROWS)}
    script = ScriptWithAtr({1: 1, 6: 1, 15: 1})
    fast = await run_backtest(settings, candles, provider=script, fast=True)
    full = await run_backtest(settings, candles, provider=script, fast=False)
    assert fast.trades == full.trades
    assert fast.fills == full.fills
