"""The EMA/RSI baseline: causal (our leakage guard), and entries exactly where its rules say."""

from __future__ import annotations

import numpy as np
import pytest
import talib

from core.domain.market import CandleSeries
from core.market.synthetic import generate_candles
from core.signals.base import Signal, SignalFrame
from core.signals.ema_rsi import EmaRsiConfig, EmaRsiCross

HOUR_MS = 3_600_000
# Short periods so hand-made series of a dozen candles get past the warm-up.
SMALL = {"fast": 3, "slow": 6, "rsi_period": 4, "atr_period": 3}


def series_of(closes: list[float], volume: list[float] | None = None) -> CandleSeries:
    """Return candles that open at the previous close, with wicks of 0.5 either side."""
    close = np.array(closes, dtype=np.float64)
    open_ = np.concatenate(([close[0]], close[:-1]))
    n = len(close)
    return CandleSeries.from_columns(
        "BTC/USDT",
        "1h",
        np.arange(n, dtype=np.int64) * HOUR_MS,
        open_,
        np.maximum(open_, close) + 0.5,
        np.minimum(open_, close) - 0.5,
        close,
        np.ones(n) if volume is None else np.array(volume, dtype=np.float64),
    )


def assert_rows_equal(frame: SignalFrame, i: int, other: SignalFrame, j: int) -> None:
    """Assert row i of ``frame`` equals row j of ``other`` exactly (NaN equals NaN)."""
    assert frame.ts_ms[i] == other.ts_ms[j]
    assert frame.entry[i] == other.entry[j]
    assert frame.exit_long[i] == other.exit_long[j]
    assert frame.exit_short[i] == other.exit_short[j]
    assert np.array_equal(frame.confidence[[i]], other.confidence[[j]], equal_nan=True)
    assert np.array_equal(frame.atr[[i]], other.atr[[j]], equal_nan=True)


# --- causality: the leakage guard -------------------------------------------------------------


@pytest.mark.parametrize("allow_short", [False, True])
@pytest.mark.parametrize("seed", [1, 42])
def test_compute_is_causal(seed: int, allow_short: bool) -> None:
    series = generate_candles("BTC/USDT", "1h", 600, seed=seed)
    provider = EmaRsiCross(EmaRsiConfig(allow_short=allow_short))
    whole = provider.compute(series)
    rng = np.random.default_rng(seed)
    # around the warm-up edge, the very start and end, and random cut points in between
    cuts = {0, 1, 48, 49, 50, 51, 52, 599, *rng.integers(53, 599, size=12).tolist()}
    for i in sorted(cuts):
        prefix = provider.compute(series.slice(0, i + 1))
        assert len(prefix) == i + 1
        assert_rows_equal(whole, i, prefix, -1)


def test_whole_frame_has_real_signals_to_guard() -> None:
    # The causality test is only meaningful if the synthetic market produces trades.
    series = generate_candles("BTC/USDT", "1h", 600, seed=42)
    frame = EmaRsiCross(EmaRsiConfig(allow_short=True)).compute(series)
    assert (frame.entry == 1).sum() > 0
    assert (frame.entry == -1).sum() > 0
    assert frame.exit_long.sum() > 0
    assert np.isfinite(frame.atr[60:]).all()


def test_prefix_equals_whole_frame_on_every_row_of_a_short_series() -> None:
    series = generate_candles("ETH/USDT", "1h", 120, seed=3)
    provider = EmaRsiCross()
    whole = provider.compute(series)
    for i in range(len(series)):
        assert_rows_equal(whole, i, provider.compute(series.slice(0, i + 1)), -1)


# --- the rules --------------------------------------------------------------------------------

# Falling with bounces, then rising with pullbacks: fast EMA(3) crosses above slow EMA(6) at row
# 14 (106.089 > 106.087, row 13: 105.677 < 105.922) with RSI(4) = 56.9.
GENTLE_RECOVERY = [
    *[110, 109, 109.5, 108, 108.5, 107, 107.5, 106, 106.5, 105],
    *[105.8, 105.2, 106, 105.6, 106.5, 106.1, 107, 106.6, 107.5],
]
# The same fall, then a jump of 10: the cross at row 10 comes with RSI(4) = 80.6.
SPIKE = [110, 109, 109.5, 108, 108.5, 107, 107.5, 106, 106.5, 105, 115, 116]
# Rising, then sagging: fast crosses below slow at row 14 (103.911 < 103.913), RSI(4) = 43.1.
GENTLE_DECLINE = [
    *[100, 101, 100.5, 102, 101.5, 103, 102.5, 104, 103.5, 105],
    *[104.2, 104.8, 104, 104.4, 103.5, 103.9, 103, 103.4, 102.5],
]


def test_long_entry_on_a_cross_above_with_calm_rsi() -> None:
    frame = EmaRsiCross(EmaRsiConfig(**SMALL)).compute(series_of(GENTLE_RECOVERY))
    assert np.flatnonzero(frame.entry).tolist() == [14]
    assert frame.entry[14] == 1
    # the same cross closes a short
    assert np.flatnonzero(frame.exit_short).tolist() == [14]
    assert not frame.exit_long.any()
    signal = Signal.at(frame, 14)
    assert signal.entry == 1
    assert 0.5 <= signal.confidence <= 1.0
    assert signal.atr > 0


def test_no_entry_when_rsi_is_overbought_at_the_cross() -> None:
    frame = EmaRsiCross(EmaRsiConfig(**SMALL)).compute(series_of(SPIKE))
    assert not frame.entry.any()
    # the cross is real (it still closes a short): only the RSI filter stopped the entry
    assert np.flatnonzero(frame.exit_short).tolist() == [10]
    # widen the RSI band and the same cross is an entry
    wide = EmaRsiCross(EmaRsiConfig(**SMALL, rsi_high=90.0)).compute(series_of(SPIKE))
    assert np.flatnonzero(wide.entry).tolist() == [10]


def test_no_entry_on_a_candle_without_volume() -> None:
    volume = [1.0] * len(GENTLE_RECOVERY)
    volume[14] = 0.0
    frame = EmaRsiCross(EmaRsiConfig(**SMALL)).compute(series_of(GENTLE_RECOVERY, volume))
    assert not frame.entry.any()
    assert not frame.exit_short.any()


def test_short_entries_only_when_allowed() -> None:
    series = series_of(GENTLE_DECLINE)
    long_only = EmaRsiCross(EmaRsiConfig(**SMALL)).compute(series)
    assert not long_only.entry.any()
    assert np.flatnonzero(long_only.exit_long).tolist() == [14]
    shorts = EmaRsiCross(EmaRsiConfig(**SMALL, allow_short=True)).compute(series)
    assert np.flatnonzero(shorts.entry).tolist() == [14]
    assert shorts.entry[14] == -1
    # allowing shorts changes nothing else
    assert np.array_equal(shorts.exit_long, long_only.exit_long)
    assert np.array_equal(shorts.confidence, long_only.confidence)


def test_no_short_entries_without_allow_short_on_synthetic_data() -> None:
    series = generate_candles("BTC/USDT", "1h", 2000, seed=5)
    frame = EmaRsiCross().compute(series)
    assert (frame.entry >= 0).all()
    assert (frame.entry == 1).any()


@pytest.mark.parametrize("allow_short", [False, True])
def test_entries_follow_the_rules_exactly_on_synthetic_data(allow_short: bool) -> None:
    series = generate_candles("ETH/USDT", "1h", 2000, seed=11)
    cfg = EmaRsiConfig(allow_short=allow_short)
    frame = EmaRsiCross(cfg).compute(series)
    fast = talib.EMA(series.close, cfg.fast)
    slow = talib.EMA(series.close, cfg.slow)
    rsi = talib.RSI(series.close, cfg.rsi_period)
    expected = np.zeros(len(series), dtype=np.int8)
    for i in range(1, len(series)):
        if np.isnan(slow[i - 1]) or not 30.0 < rsi[i] < 70.0 or series.volume[i] <= 0:
            continue
        if fast[i] > slow[i] and not fast[i - 1] > slow[i - 1]:
            expected[i] = 1
        elif allow_short and fast[i] < slow[i] and not fast[i - 1] < slow[i - 1]:
            expected[i] = -1
    assert np.array_equal(frame.entry, expected)
    assert (expected != 0).sum() > 5


# --- warm-up ----------------------------------------------------------------------------------


def test_no_signals_during_warm_up() -> None:
    series = generate_candles("BTC/USDT", "1h", 400, seed=8)
    provider = EmaRsiCross(EmaRsiConfig(allow_short=True))
    frame = provider.compute(series)
    slow = provider.config.slow
    assert provider.warmup_candles == slow + 1
    # the slow EMA is first valid at row slow-1; a cross needs the row before it valid too
    assert not frame.entry[:slow].any()
    assert not frame.exit_long[:slow].any()
    assert not frame.exit_short[:slow].any()
    assert (frame.confidence[: slow - 1] == 0.0).all()
    assert np.isnan(frame.atr[: provider.config.atr_period]).all()


def test_a_series_shorter_than_the_warm_up_gives_no_signals() -> None:
    series = generate_candles("BTC/USDT", "1h", 40, seed=8)
    frame = EmaRsiCross(EmaRsiConfig(allow_short=True)).compute(series)
    assert len(frame) == 40
    assert not frame.entry.any()
    assert not frame.exit_long.any()
    assert not frame.exit_short.any()


def test_invalid_config_is_refused_with_the_values() -> None:
    with pytest.raises(ValueError, match="fast=50 slow=20"):
        EmaRsiConfig(fast=50, slow=20)
    with pytest.raises(ValueError, match="70"):
        EmaRsiConfig(rsi_low=70, rsi_high=30)
