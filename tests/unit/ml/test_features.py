"""The feature set: broad, deterministic, hashed, scale-free, and causal (our leakage guard)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.domain.market import CandleSeries
from core.market.synthetic import generate_candles
from core.ml.context_features import resample
from core.ml.features import FeatureConfig, compute_features, feature_set

HOUR_MS = 3_600_000
FULL = FeatureConfig(higher_timeframe="4h", reference_symbol="BTC/USDT", dtype="float64")


def scaled(series: CandleSeries, price: float, volume: float = 1.0) -> CandleSeries:
    return CandleSeries.from_columns(
        series.symbol,
        series.timeframe,
        series.ts_ms,
        series.open * price,
        series.high * price,
        series.low * price,
        series.close * price,
        series.volume * volume,
    )


def altered_after(series: CandleSeries, t: int, seed: int) -> CandleSeries:
    """Return ``series`` with every candle after row ``t`` replaced by a different path."""
    rng = np.random.default_rng(seed)
    k = len(series) - t - 1
    factor = np.exp(rng.normal(0.0, 0.05, k))
    cols = [c.copy() for c in (series.open, series.high, series.low, series.close)]
    for c in cols:
        c[t + 1 :] *= factor
    volume = series.volume.copy()
    volume[t + 1 :] *= rng.uniform(0.1, 10.0, k)
    return CandleSeries.from_columns(series.symbol, series.timeframe, series.ts_ms, *cols, volume)


def assert_rows_equal(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    assert np.array_equal(a, b, equal_nan=True)


# --- the set --------------------------------------------------------------------------------


def test_the_set_is_at_least_as_broad_as_the_old_systems_49_features() -> None:
    base = feature_set()
    full = feature_set(FULL)
    assert len(base.columns) >= 49
    assert len(set(full.columns)) == len(full.columns)
    assert full.columns[: len(base.columns)] == base.columns
    for name in (
        "ret_1",
        "rsi_14",
        "macd_hist",
        "stoch_k",
        "adx",
        "dist_ema_200",
        "natr_14",
        "bb_pctb",
        "bb_width",
        "obv_slope",
        "vol_ratio_20",
        "rv_24",
        "hour_sin",
        "dow_cos",
        "htf4h_rsi_14",
        "ref_ret_1",
        "ref_corr_72",
    ):
        assert name in full.columns


def test_the_default_hash_is_pinned() -> None:
    # Changing a feature changes this: bump FEATURE_SET_VERSION, then update the pin.
    assert feature_set().hash == (
        "954f2f005d4eb55c1c9ce95a5674cb39d0a5e04f96700f7922624e005b586878"
    )


def test_the_hash_changes_with_every_option() -> None:
    hashes = {
        feature_set().hash,
        feature_set(timeframe="15m").hash,
        feature_set(FeatureConfig(higher_timeframe="4h")).hash,
        feature_set(FeatureConfig(higher_timeframe="1d")).hash,
        feature_set(FeatureConfig(reference_symbol="BTC/USDT")).hash,
        feature_set(FeatureConfig(reference_symbol="ETH/USDT")).hash,
        feature_set(FeatureConfig(dtype="float64")).hash,
    }
    assert len(hashes) == 7


def test_matrix_shape_warmup_and_no_gaps_after_it() -> None:
    series = generate_candles("ETH/USDT", "1h", 1200, seed=3)
    ref = generate_candles("BTC/USDT", "1h", 1200, seed=4)
    fm = compute_features(series, FULL, reference=ref)
    fs = feature_set(FULL)
    assert fm.values.shape == (1200, len(fs.columns))
    assert fm.values.dtype == np.float64
    assert fm.columns == fs.columns and fm.set_hash == fs.hash
    assert 0 < fm.first_valid <= fs.warmup_candles
    assert np.isnan(fm.values[: fm.first_valid]).any(axis=1).all()
    assert fm.valid_rows()[fm.first_valid :].all()
    assert compute_features(series).values.dtype == np.float32


def test_a_wrong_or_missing_reference_is_refused() -> None:
    series = generate_candles("ETH/USDT", "1h", 300, seed=3)
    with pytest.raises(ValueError, match="reference series BTC/USDT, was given none"):
        compute_features(series, FULL)
    with pytest.raises(ValueError, match="was given SOL/USDT"):
        compute_features(series, FULL, reference=generate_candles("SOL/USDT", "1h", 300, seed=1))
    with pytest.raises(ValueError, match="multiple of 1h"):
        compute_features(series, FeatureConfig(higher_timeframe="90m"))


# --- causality --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 7])
def test_every_feature_is_causal_under_removal_and_alteration_of_later_candles(seed: int) -> None:
    n = 900
    series = generate_candles("ETH/USDT", "1h", n, seed=seed, start_ms=1_704_070_800_000)
    ref = generate_candles("BTC/USDT", "1h", n, seed=seed + 100, start_ms=1_704_067_200_000)
    whole = compute_features(series, FULL, reference=ref).values
    rng = np.random.default_rng(seed)
    # the warm-up edge, both ends of a 4h bucket, and random rows
    cuts = {0, 1, 198, 199, 200, 201, 202, 203, n - 2, *rng.integers(204, n - 2, 8).tolist()}
    for t in sorted(cuts):
        end_ms = int(series.ts_ms[t]) + HOUR_MS  # the close of row t
        cut = compute_features(series.slice(0, t + 1), FULL, reference=ref.between(None, end_ms))
        assert_rows_equal(cut.values, whole[: t + 1])
        later = altered_after(series, t, seed + t)
        ref_t = int(np.searchsorted(ref.ts_ms, end_ms)) - 1  # the last reference candle closed
        changed = compute_features(later, FULL, reference=altered_after(ref, ref_t, t)).values
        assert_rows_equal(changed[: t + 1], whole[: t + 1])
        if t < n - 2:  # and the alteration had teeth: later rows did change
            assert not np.array_equal(changed[t + 2 :], whole[t + 2 :], equal_nan=True)


def test_higher_timeframe_uses_only_completed_buckets() -> None:
    series = generate_candles("ETH/USDT", "1h", 400, seed=5)  # starts at 00:00, a 4h boundary
    fm = compute_features(series, FeatureConfig(higher_timeframe="4h", dtype="float64"))
    htf_ret = fm.column("htf4h_ret_1")
    close = series.close
    for t in range(11, 400, 4):  # rows 3, 7, 11, ... complete a 4h bucket
        expected = math.log(close[t] / close[t - 4])
        assert htf_ret[t] == pytest.approx(expected, rel=1e-12)
        # and the value holds, unchanged, while the next bucket forms
        assert (htf_ret[t : min(t + 4, 400)] == htf_ret[t]).all()
    assert np.isnan(htf_ret[:7]).all()  # no bucket before row 3, no previous one before row 7


def test_resample_builds_venue_candles() -> None:
    series = generate_candles("ETH/USDT", "1h", 10, seed=5)
    htf = resample(series, "4h")
    assert htf.ts_ms.tolist() == [int(series.ts_ms[i]) for i in (0, 4, 8)]
    assert htf.open[1] == series.open[4] and htf.close[1] == series.close[7]
    assert htf.high[1] == series.high[4:8].max() and htf.low[1] == series.low[4:8].min()
    assert htf.volume[2] == pytest.approx(series.volume[8:10].sum())


def test_a_reference_equal_to_the_series_is_perfectly_aligned() -> None:
    series = generate_candles("ETH/USDT", "1h", 500, seed=2)
    ref = CandleSeries.from_columns(
        "BTC/USDT",
        "1h",
        series.ts_ms,
        series.open,
        series.high,
        series.low,
        series.close,
        series.volume,
    )
    fm = compute_features(
        series, FeatureConfig(reference_symbol="BTC/USDT", dtype="float64"), reference=ref
    )
    ok = slice(fm.first_valid, None)
    assert np.array_equal(fm.column("ref_ret_1")[ok], fm.column("ret_1")[ok])
    assert np.allclose(fm.column("ref_corr_72")[ok], 1.0)
    assert np.allclose(fm.column("ref_beta_72")[ok], 1.0)
    assert np.allclose(fm.column("ref_rel_ret_24")[ok], 0.0)


def test_a_gap_in_the_reference_is_nan_not_stale() -> None:
    series = generate_candles("ETH/USDT", "1h", 400, seed=2)
    ref = generate_candles("BTC/USDT", "1h", 400, seed=3)
    keep = np.ones(400, dtype=bool)
    keep[300:305] = False
    fm = compute_features(
        series, FeatureConfig(reference_symbol="BTC/USDT"), reference=ref.mask(keep)
    )
    ref_ret = fm.column("ref_ret_1")
    assert np.isnan(ref_ret[300:305]).all()
    assert np.isfinite(ref_ret[250:300]).all() and np.isfinite(ref_ret[306:]).all()


@pytest.mark.parametrize("n", [0, 1, 5, 30])
def test_short_series_and_an_empty_reference_give_nan_not_errors(n: int) -> None:
    series = generate_candles("ETH/USDT", "1h", n, seed=2)
    for ref in (
        generate_candles("BTC/USDT", "1h", n, seed=3),
        CandleSeries.empty("BTC/USDT", "1h"),
    ):
        fm = compute_features(series, FULL, reference=ref)
        assert fm.values.shape == (n, len(feature_set(FULL).columns))
        assert fm.first_valid == n and np.isnan(fm.values).any(axis=1).all()


def test_time_of_day_and_week_are_cyclical() -> None:
    monday = 1_704_067_200_000  # 2024-01-01 00:00 UTC, a Monday
    series = generate_candles("ETH/USDT", "1h", 24 * 7 + 1, seed=2, start_ms=monday)
    fm = compute_features(series, FeatureConfig(dtype="float64"))
    assert fm.column("hour_sin")[0] == 0.0 and fm.column("hour_cos")[0] == 1.0
    assert fm.column("dow_sin")[0] == 0.0 and fm.column("dow_cos")[0] == 1.0
    assert fm.column("hour_sin")[6] == pytest.approx(1.0)  # 06:00
    assert fm.column("dow_cos")[24 * 7] == pytest.approx(1.0)  # next Monday
    assert fm.column("dow_sin")[42] == pytest.approx(1.0)  # Tuesday 18:00, a quarter week


# --- scale --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("price", "volume"), [(1e-4, 1e7), (1e5, 1e-3), (0.37, 3.0)])
def test_features_are_scale_free(price: float, volume: float) -> None:
    base = generate_candles("ETH/USDT", "1h", 800, seed=9)
    ref = generate_candles("BTC/USDT", "1h", 800, seed=10)
    cfg = FULL
    at_one = compute_features(base, cfg, reference=ref).values
    other = compute_features(
        scaled(base, price, volume), cfg, reference=scaled(ref, 1 / price, volume)
    ).values
    assert np.array_equal(np.isnan(at_one), np.isnan(other))
    ok = ~np.isnan(at_one)
    assert np.allclose(other[ok], at_one[ok], rtol=1e-6, atol=1e-9)


def test_a_power_of_two_scale_changes_no_bit() -> None:
    base = generate_candles("ETH/USDT", "1h", 600, seed=9)
    cfg = FeatureConfig(higher_timeframe="4h", dtype="float64")
    assert_rows_equal(
        compute_features(scaled(base, 2.0**-40, 2.0**30), cfg).values,
        compute_features(base, cfg).values,
    )


@pytest.mark.parametrize("config", [FeatureConfig(dtype="float64"), FULL])
def test_history_candles_are_enough_for_live_to_match_training(config: FeatureConfig) -> None:
    # Live computes the newest row from a tail of history; training saw all of it.
    series = generate_candles("ETH/USDT", "1h", 4000, seed=12)
    ref = generate_candles("BTC/USDT", "1h", 4000, seed=13)
    full = compute_features(series, config, reference=ref).values
    tail = feature_set(config).history_candles
    assert tail < 1100
    for end in (2500, 3999):
        live = compute_features(series.slice(end - tail + 1, end + 1), config, reference=ref)
        assert np.allclose(live.values[-1], full[end], rtol=1e-3, atol=1e-6)
        short = compute_features(series.slice(end - 300, end + 1), config, reference=ref)
        assert not np.allclose(short.values[-1], full[end], rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize(
    "config", [FeatureConfig(), FeatureConfig(higher_timeframe="4h", dtype="float64")]
)
def test_features_of_a_grown_history_keep_the_old_rows_and_equal_a_whole_compute(
    config: FeatureConfig,
) -> None:
    s = generate_candles("ETH/USDT", "1h", 700, seed=9)
    fm = compute_features(s.slice(0, 150), config)  # still warming up: no valid row yet
    for n in (151, 420, 421, 422, 700):  # a candle at a time, and many at once
        grown = compute_features(s.slice(0, n), config, previous=fm)
        whole = compute_features(s.slice(0, n), config)
        assert np.array_equal(grown.values, whole.values, equal_nan=True)  # the same floats
        assert (grown.first_valid, grown.set_hash, grown.columns) == (
            whole.first_valid,
            whole.set_hash,
            whole.columns,
        )
        fm = grown
    other = compute_features(s.slice(0, 300), FeatureConfig(dtype="float64"))
    assert np.array_equal(  # features of another set are not kept
        compute_features(s.slice(0, 301), previous=other).values,
        compute_features(s.slice(0, 301)).values,
        equal_nan=True,
    )
