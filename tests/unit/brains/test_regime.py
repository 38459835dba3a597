"""Regimes: trend/range x high/low volatility, causal, confirmed, one label set."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from core.brains.regime import (
    Regime,
    RegimeConfig,
    RegimeMemo,
    _trailing_median,
    changes,
    detect_regimes,
)
from core.domain.market import CandleSeries
from core.market.synthetic import generate_candles

T0 = 1_704_067_200_000
H = 3_600_000


def path(close: np.ndarray, wick: float = 0.002) -> CandleSeries:
    ts = T0 + np.arange(len(close), dtype=np.int64) * H
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(open_, close) * (1 + wick)
    low = np.minimum(open_, close) * (1 - wick)
    return CandleSeries.from_columns(
        "X/USDT", "1h", ts, open_, high, low, close, np.ones(len(close))
    )


CFG = RegimeConfig(vol_window=24, vol_history=200, confirm=3)


def test_a_steady_climb_is_a_trend_and_a_flat_chop_is_a_range() -> None:
    rng = np.random.default_rng(1)
    n = 800
    climb = path(100 * np.exp(np.cumsum(0.004 + rng.normal(0, 0.001, n))))
    chop = path(100 * np.exp(0.01 * np.sin(np.arange(n) / 3) + rng.normal(0, 0.001, n)))
    late = slice(CFG.warmup_candles, None)
    trend = detect_regimes(climb, CFG)[late]
    rng_ = detect_regimes(chop, CFG)[late]
    assert np.isin(trend, [Regime.TREND_LOW_VOL, Regime.TREND_HIGH_VOL]).mean() > 0.9
    assert np.isin(rng_, [Regime.RANGE_LOW_VOL, Regime.RANGE_HIGH_VOL]).mean() > 0.9


def test_volatility_is_high_when_it_rises_above_the_coins_own_past_at_any_price() -> None:
    rng = np.random.default_rng(2)
    calm, wild = rng.normal(0, 0.002, 600), rng.normal(0, 0.02, 100)
    returns = np.concatenate([calm, wild])
    for scale in (0.0001, 100_000.0):
        regimes = detect_regimes(path(scale * np.exp(np.cumsum(returns))), CFG)
        assert np.isin(regimes[500:590], [Regime.TREND_LOW_VOL, Regime.RANGE_LOW_VOL]).all()
        assert np.isin(regimes[640:], [Regime.TREND_HIGH_VOL, Regime.RANGE_HIGH_VOL]).all()


def test_warm_up_is_unknown_and_nothing_raises_on_short_or_empty_series() -> None:
    series = generate_candles("X/USDT", "1h", 50, seed=1)
    assert (detect_regimes(series, CFG) == Regime.UNKNOWN).all()
    assert len(detect_regimes(series.slice(0, 0), CFG)) == 0


def test_a_regime_at_t_does_not_change_when_candles_after_t_change() -> None:
    series = generate_candles("X/USDT", "1h", 1500, seed=4)
    full = detect_regimes(series, CFG)
    for cut in (400, 777, 1200):
        head = detect_regimes(series.slice(0, cut), CFG)
        assert np.array_equal(head, full[:cut])
        # A different future: doubled prices from the cut on.
        doubled = CandleSeries.from_columns(
            "X/USDT", "1h", series.ts_ms,
            *(np.where(np.arange(len(series)) >= cut, a * 2, a) for a in
              (series.open, series.high, series.low, series.close)),
            series.volume,
        )  # fmt: skip
        assert np.array_equal(detect_regimes(doubled, CFG)[:cut], full[:cut])


def test_a_label_takes_over_only_after_it_held_for_the_confirmation_candles() -> None:
    series = generate_candles("X/USDT", "1h", 2000, seed=9)
    quick = detect_regimes(series, RegimeConfig(vol_history=200, confirm=1))
    slow = detect_regimes(series, RegimeConfig(vol_history=200, confirm=6))
    assert len(changes(slow, series.ts_ms)) < len(changes(quick, series.ts_ms))
    for ts, before, after in changes(slow, series.ts_ms):
        i = int(np.searchsorted(series.ts_ms, ts))
        assert before != after and (slow[i : i + 1] == after).all()
        assert i == 0 or slow[i - 1] == before


@pytest.mark.parametrize(
    "bad",
    [
        {"adx_period": 0},
        {"confirm": 0},
        {"trend_adx": 0.0},
        {"trend_adx": 100.0},
        {"high_vol_ratio": 0},
    ],
)
def test_bad_settings_are_refused_naming_them(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        RegimeConfig(**bad)  # type: ignore[arg-type]


def test_regimes_have_one_label_set() -> None:
    assert [r.label for r in Regime] == [
        "unknown",
        "trend_low_vol",
        "trend_high_vol",
        "range_low_vol",
        "range_high_vol",
    ]


def test_a_memo_reuses_the_shared_rows_and_changes_no_regime() -> None:
    series = generate_candles("X/USDT", "1h", 700, seed=8)
    memo = RegimeMemo()
    for n in (100, 300, 301, 450, 700, 650):  # growing like a live history, then re-seeded
        part = series.slice(0, n)
        assert np.array_equal(detect_regimes(part, CFG, memo), detect_regimes(part, CFG))
        assert len(memo.typical) == n
    other = generate_candles("X/USDT", "1h", 700, seed=9)  # same times, other closes
    assert np.array_equal(detect_regimes(other, CFG, memo), detect_regimes(other, CFG))


def _median_of_windows(values: np.ndarray, history: int) -> np.ndarray:
    """The definition: at row i, np.median of values[i - history:i] (NaN in it: NaN)."""
    out = np.full(len(values), np.nan)
    for i in range(history, len(values)):
        out[i] = np.median(values[i - history : i])
    return out


@pytest.mark.parametrize("history", [1, 2, 7, 24])
def test_the_trailing_median_is_numpys_median_of_each_window(history: int) -> None:
    rng = np.random.default_rng(7)
    values = np.abs(rng.normal(0.01, 0.003, 400))
    values[:12] = np.nan  # warm-up of the volatility
    values[200:203] = np.nan  # a gap in the data
    want = _median_of_windows(values, history)
    assert np.array_equal(_trailing_median(values, history), want, equal_nan=True)
    for shared in (0, history, 150, 250):  # a memo holding the first rows already
        got = _trailing_median(values, history, want[:shared])
        assert np.array_equal(got, want, equal_nan=True), shared


def test_a_long_history_needs_no_window_matrix() -> None:
    """Eight years of 5m candles are ~840,000 rows: a (rows x vol_history) matrix of windows
    would be ~4.8 GB; the median must cost memory of the order of the history alone."""
    values = np.abs(np.random.default_rng(8).normal(0.01, 0.003, 20_000))
    tracemalloc.start()
    try:
        _trailing_median(values, 720)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * values.nbytes, f"peak {peak / 2**20:.0f} MiB for 20,000 rows"


def test_a_memo_made_under_another_config_is_not_reused() -> None:
    series = generate_candles("BTC/USDT", "1h", 600, seed=5)
    short = RegimeConfig(vol_window=12, vol_history=30, confirm=2)
    memo = RegimeMemo()
    detect_regimes(series.slice(0, 300), RegimeConfig(vol_window=12, vol_history=60), memo)
    assert np.array_equal(detect_regimes(series, short, memo), detect_regimes(series, short))
