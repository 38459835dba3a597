"""A backtest with a dynamic universe: point in time, entries only for members at the candle's
close, the same trades fast and full, and the report's universe counts."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from bot.backtest import run_backtest
from core.config import Settings, load_settings
from core.domain.market import CandleSeries
from core.market.synthetic import generate_candles
from core.signals.base import SignalFrame

T0 = 1_704_067_200_000  # 2024-01-01
HOUR = 3_600_000
DAY = 24 * HOUR
N = 60 * 24  # 60 days of 1h candles


class EveryTwoDays:
    """Enter long every 48 candles, exit 24 candles later: trades on every symbol."""

    name = "every_two_days"
    warmup_candles = 1

    def compute(self, series: CandleSeries) -> SignalFrame:
        k = (series.ts_ms - T0) // HOUR
        n = len(series)
        return SignalFrame(
            ts_ms=series.ts_ms,
            entry=(k % 48 == 0).astype(np.int8),
            exit_long=(k % 48 == 24),
            exit_short=np.zeros(n, dtype=np.bool_),
            confidence=np.full(n, 0.5),
            atr=np.full(n, np.nan),
        )


def scaled(symbol: str, volume_by_day: list[float], seed: int) -> CandleSeries:
    """Synthetic candles whose daily volume level follows ``volume_by_day`` (one per day)."""
    s = generate_candles(symbol, "1h", N, seed=seed, start_ms=T0)
    level = np.repeat(np.asarray(volume_by_day, dtype=np.float64), 24)[:N]
    volume = level / np.maximum(s.close, 1e-12)  # quote volume per candle = level
    return CandleSeries.from_columns(symbol, "1h", s.ts_ms, s.open, s.high, s.low, s.close, volume)


def market() -> dict[str, CandleSeries]:
    days = 60
    return {
        # Big throughout: always in.
        "AAA/USDT": scaled("AAA/USDT", [1e6] * days, 1),
        # Big for the first 30 days, then thin: leaves.
        "BBB/USDT": scaled("BBB/USDT", [5e5] * 30 + [1.0] * 30, 2),
        # Thin, then big from day 30: enters.
        "CCC/USDT": scaled("CCC/USDT", [1.0] * 30 + [5e5] * 30, 3),
        # Never big enough.
        "DDD/USDT": scaled("DDD/USDT", [10.0] * days, 4),
    }


def settings_with(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> Settings:
    for name in list(os.environ):
        if name.upper().startswith("QT__"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


VOLUME = {
    # The universe's mechanics, not the brains' (which may disable the scripted provider)
    "QT__BRAINS__ENABLED": "false",
    "QT__UNIVERSE__MODE": "volume",
    "QT__UNIVERSE__TOP_N": "2",
    "QT__UNIVERSE__MIN_LISTING_DAYS": "0",
    "QT__UNIVERSE__REFRESH_HOURS": "24",
    "QT__RISK__MAX_OPEN_POSITIONS": "4",
    "QT__RISK__MAX_POSITION_PCT": "0.2",  # four positions fit under the exposure cap
}


async def test_entries_only_for_members_at_the_decision_and_open_trades_run_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = settings_with(monkeypatch, tmp_path, **VOLUME)
    start = T0 + 10 * DAY
    result = await run_backtest(settings, market(), start_ms=start, provider=EveryTwoDays())
    u = result.universe
    assert u is not None
    assert u.ever_selected == ("AAA/USDT", "BBB/USDT", "CCC/USDT")
    assert (u.min_size, u.max_size) == (2, 2)
    assert u.refreshes == 50  # day 10 to day 59, one a day
    [first, swap] = u.timeline
    assert first.members == ("AAA/USDT", "BBB/USDT") and first.at_ms == start
    # CCC's big days start at day 30; the refresh of day 31 is the first that sees a whole day
    # of them (the one at day 30 sees only candles closed by then).
    assert (swap.entered, swap.left, swap.at_ms) == (("CCC/USDT",), ("BBB/USDT",), T0 + 31 * DAY)

    by_symbol: dict[str, list[int]] = {}
    for t in result.trades:
        by_symbol.setdefault(t.symbol, []).append(t.opened_ms)
    assert "DDD/USDT" not in by_symbol  # never selected: never traded
    assert min(by_symbol["CCC/USDT"]) > swap.at_ms
    # A trade of BBB opened before it left may close after; none opens after.
    assert max(by_symbol["BBB/USDT"]) <= swap.at_ms + HOUR
    assert len(by_symbol["AAA/USDT"]) >= 20


async def test_fast_and_full_replay_agree_with_a_universe(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = settings_with(monkeypatch, tmp_path, **VOLUME)
    runs = [
        await run_backtest(
            settings, market(), start_ms=T0 + 10 * DAY, provider=EveryTwoDays(), fast=fast
        )
        for fast in (True, False)
    ]
    assert runs[0].trades == runs[1].trades and runs[0].trades
    fast, full = (r.universe for r in runs)
    assert fast is not None and full is not None
    assert [(c.at_ms, c.members) for c in fast.timeline] == [
        (c.at_ms, c.members) for c in full.timeline
    ]


async def test_static_mode_trades_every_symbol_and_reports_no_universe(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = settings_with(
        monkeypatch, tmp_path, QT__RISK__MAX_OPEN_POSITIONS="4", QT__RISK__MAX_POSITION_PCT="0.2"
    )
    result = await run_backtest(settings, market(), start_ms=T0 + 10 * DAY, provider=EveryTwoDays())
    assert result.universe is None
    assert {t.symbol for t in result.trades} == set(market())
