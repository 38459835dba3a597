"""The synthetic market: deterministic per seed, valid, fat-tailed, volatility clustering."""

from __future__ import annotations

import time

import numpy as np
import pytest

from core.market.synthetic import generate_candles, symbol_seed
from core.market.validation import validate_candles

COLUMNS = ("ts_ms", "open", "high", "low", "close", "volume")


def test_same_seed_gives_identical_arrays() -> None:
    a = generate_candles("BTC/USDT", "1h", 2_000, seed=7)
    b = generate_candles("BTC/USDT", "1h", 2_000, seed=7)
    for col in COLUMNS:
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col))


def test_different_seed_or_symbol_differs() -> None:
    base = generate_candles("BTC/USDT", "1h", 500, seed=7)
    other_seed = generate_candles("BTC/USDT", "1h", 500, seed=8)
    other_symbol = generate_candles("ETH/USDT", "1h", 500, seed=7)
    assert not np.array_equal(base.close, other_seed.close)
    assert not np.array_equal(base.close, other_symbol.close)


def test_symbol_seed_is_stable_across_processes() -> None:
    # A fixed value: Python's hash() would change per process and break this.
    assert symbol_seed(1, "BTC/USDT") == 0xABB63751537D2853
    assert symbol_seed(1, "BTC/USDT") != symbol_seed(1, "ETH/USDT")


@pytest.mark.parametrize("timeframe", ["1m", "5m", "1h", "1d", "1w"])
def test_output_passes_validation_on_the_grid(timeframe: str) -> None:
    series = generate_candles("BTC/USDT", timeframe, 5_000, seed=3, start_price=30_000.0)
    report = validate_candles(series, source="synthetic")
    assert report.rows == 5_000
    assert report.gaps == ()
    assert series.open[0] == 30_000.0
    np.testing.assert_array_equal(series.open[1:], series.close[:-1])


def test_start_and_length() -> None:
    series = generate_candles("X/Y", "15m", 3, seed=1, start_ms=900_000 * 10)
    assert series.ts_ms.tolist() == [9_000_000, 9_900_000, 10_800_000]
    assert len(generate_candles("X/Y", "1h", 0, seed=1)) == 0
    with pytest.raises(ValueError, match="not on the 1h grid"):
        generate_candles("X/Y", "1h", 3, seed=1, start_ms=1)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_stylised_facts_fat_tails_and_volatility_clustering(seed: int) -> None:
    series = generate_candles("BTC/USDT", "1h", 20_000, seed=seed)
    r = np.diff(np.log(series.close))
    excess_kurtosis = float(((r - r.mean()) ** 4).mean() / r.var() ** 2 - 3)
    abs_r = np.abs(r)
    acf1_abs = float(np.corrcoef(abs_r[:-1], abs_r[1:])[0, 1])
    acf1_raw = float(np.corrcoef(r[:-1], r[1:])[0, 1])
    vol_corr = float(np.corrcoef(abs_r, series.volume[1:])[0, 1])
    assert excess_kurtosis > 1.0
    assert acf1_abs > 0.1  # |r| clusters ...
    assert abs(acf1_raw) < 0.05  # ... while returns themselves are barely autocorrelated
    assert vol_corr > 0.1  # volume rises with the size of moves


def test_100k_candles_well_under_a_second() -> None:
    t0 = time.perf_counter()
    generate_candles("BTC/USDT", "1m", 100_000, seed=1)
    assert time.perf_counter() - t0 < 0.5


def test_trend_scale_multiplies_the_drift_and_nothing_else() -> None:
    plain = generate_candles("BTC/USDT", "1h", 2_000, seed=3)
    same = generate_candles("BTC/USDT", "1h", 2_000, seed=3, trend_scale=1.0)
    assert np.array_equal(plain.close, same.close) and np.array_equal(plain.high, same.high)
    flat = generate_candles("BTC/USDT", "1h", 2_000, seed=3, trend_scale=0.0)
    steep = generate_candles("BTC/USDT", "1h", 2_000, seed=3, trend_scale=6.0)
    # Same shocks, regimes and volumes: the log returns differ by 6 times the plain drift.
    drift = np.diff(np.log(plain.close)) - np.diff(np.log(flat.close))
    steep_drift = np.diff(np.log(steep.close)) - np.diff(np.log(flat.close))
    assert np.abs(drift).max() > 0
    assert np.allclose(steep_drift, 6.0 * drift)
    assert np.array_equal(steep.volume, plain.volume)
    with pytest.raises(ValueError, match="trend_scale"):
        generate_candles("BTC/USDT", "1h", 10, seed=3, trend_scale=-1.0)
