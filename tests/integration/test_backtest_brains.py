"""The brains in a backtest: on simulated time, the same in the fast and the full replay, and a
crash ends in EMERGENCY with the exposure cut."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.backtest import run_backtest
from core.domain.events import ModeChanged, PolicyUpdated, RiskAssessed
from core.market.synthetic import generate_candles, with_crash
from tests.integration.scripted import settings_with

N = 1_200
CRASH_AT = 900


def _markets() -> dict:
    return {
        s: with_crash(generate_candles(s, "1h", N, seed=5, trend_scale=4.0), CRASH_AT, 35.0)
        for s in ("BTC/USDT", "ETH/USDT")
    }


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    return settings_with(
        monkeypatch,
        tmp_path,
        QT__BRAINS__ENABLED="true",
        QT__BRAINS__MC_PATHS="20000",
        QT__RISK__MAX_CORRELATION="1",
        QT__STRATEGY__EMA_FAST="5",
        QT__STRATEGY__EMA_SLOW="12",
    )


async def test_fast_and_full_replays_run_the_brains_alike(settings) -> None:
    markets = _markets()
    start = int(markets["BTC/USDT"].ts_ms[300])
    fast = await run_backtest(settings, markets, start_ms=start, fast=True)
    full = await run_backtest(settings, markets, start_ms=start, fast=False)
    assert fast.trades == full.trades
    assert len(fast.trades) >= 5, "the scenario must trade to prove anything"

    def brains(result) -> list[tuple]:
        return [
            (e.ts_ms, e.topic, getattr(e, "score", None), getattr(e, "current", None))
            for e in result.brain_events
            if isinstance(e, RiskAssessed | ModeChanged | PolicyUpdated)
        ]

    assert brains(fast) == brains(full)
    assessed = [e for e in fast.brain_events if isinstance(e, RiskAssessed)]
    hours = (int(markets["BTC/USDT"].ts_ms[-1]) - start) // 3_600_000
    assert abs(len(assessed) - hours) <= 2  # every market hour, on simulated time
    crash_ms = int(markets["BTC/USDT"].ts_ms[CRASH_AT])
    modes = [e for e in fast.brain_events if isinstance(e, ModeChanged)]
    emergency = [m for m in modes if m.current == "EMERGENCY"]
    assert emergency and all(m.ts_ms > crash_ms for m in emergency)  # none before the crash
    # The crash candle closes an hour after it opens: the next assessment is CRITICAL.
    assert emergency[0].ts_ms <= crash_ms + 2 * 3_600_000
    assert not [t for t in fast.trades if t.opened_ms > emergency[0].ts_ms]  # halted


async def test_brains_off_is_the_settings_policy_throughout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = settings_with(monkeypatch, tmp_path, QT__BRAINS__ENABLED="false")
    markets = _markets()
    result = await run_backtest(settings, markets, start_ms=int(markets["BTC/USDT"].ts_ms[300]))
    assert not [e for e in result.brain_events if isinstance(e, RiskAssessed | ModeChanged)]
    assert not [j for j, _ in result.job_runs if j in ("risk_assessment", "strategy_review")]
