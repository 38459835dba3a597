"""Inputs ``run_backtest`` refuses before it simulates anything."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.backtest import run_backtest
from core.config import Settings, load_settings
from core.errors import ConfigError, DataError
from core.market.synthetic import generate_candles


def default_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    """Return the default settings, ignoring the caller's environment and .env."""
    for name in list(os.environ):
        if name.upper().startswith("QT__"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return load_settings()


@pytest.mark.parametrize(
    ("detail_tf", "why"),
    [
        ("1d", "coarser"),  # each 1h candle would fill against the whole day: look-ahead
        ("1h", "no finer"),
        ("40m", "does not divide"),  # the 01:20-02:00 candle straddles two hours
    ],
)
async def test_detail_must_be_a_finer_timeframe_that_divides_the_strategy_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, detail_tf: str, why: str
) -> None:
    settings = default_settings(monkeypatch, tmp_path)
    series = {"BTC/USDT": generate_candles("BTC/USDT", "1h", 200, seed=1)}
    start = int(series["BTC/USDT"].ts_ms[0])
    detail = {"BTC/USDT": generate_candles("BTC/USDT", detail_tf, 50, seed=1, start_ms=start)}
    with pytest.raises(DataError, match=rf"detail candles of BTC/USDT are {detail_tf}.*{why}"):
        await run_backtest(settings, series, detail=detail, fast=False)


async def test_candles_quoted_in_another_currency_than_the_cash_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # USDT cash cannot buy BTC/EUR: the run used to end with 0 trades and no word why.
    settings = default_settings(monkeypatch, tmp_path)
    series = {"BTC/EUR": generate_candles("BTC/EUR", "1h", 200, seed=1)}
    with pytest.raises(ConfigError, match=r"QT__TRADING__QUOTE_CURRENCY=USDT.*BTC/EUR"):
        await run_backtest(settings, series)


async def test_a_symbol_without_candles_in_the_range_is_refused_before_the_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # SOL listed after the range (the run used to end in an IndexError after BTC's backtest).
    settings = default_settings(monkeypatch, tmp_path)
    t0, h = 1_704_067_200_000, 3_600_000  # 2024-01-01
    series = {
        "BTC/USDT": generate_candles("BTC/USDT", "1h", 400, seed=1, start_ms=t0),
        "SOL/USDT": generate_candles("SOL/USDT", "1h", 50, seed=2, start_ms=t0 + 300 * h),
    }
    with pytest.raises(DataError) as caught:
        await run_backtest(settings, series, start_ms=t0, end_ms=t0 + 96 * h)
    assert str(caught.value) == (
        "SOL/USDT has no candles from 2024-01-01 00:00 to 2024-01-05 00:00; its candles cover "
        "2024-01-13 12:00 to 2024-01-15 13:00"
    )
