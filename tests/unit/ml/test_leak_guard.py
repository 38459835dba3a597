"""The leak guard refuses the label and the future, and passes the real feature set."""

from __future__ import annotations

import time

import numpy as np
import pytest

from core.market.synthetic import generate_candles
from core.ml.features import FeatureConfig, compute_features
from core.ml.labels import direction_labels, forward_returns, triple_barrier_labels
from core.ml.leak_guard import assert_no_leak

FULL = FeatureConfig(higher_timeframe="4h", reference_symbol="BTC/USDT")


def real_matrix(n: int = 6000, seed: int = 3) -> tuple[np.ndarray, tuple[str, ...], np.ndarray]:
    series = generate_candles("ETH/USDT", "1h", n, seed=seed)
    ref = generate_candles("BTC/USDT", "1h", n, seed=seed + 1)
    fm = compute_features(series, FULL, reference=ref)
    return fm.values, fm.columns, series.close


def with_column(values: np.ndarray, columns: tuple[str, ...], name: str, col: np.ndarray):
    return np.column_stack([values, col]), (*columns, name)


@pytest.mark.parametrize("seed", [3, 4])
def test_the_real_feature_set_passes_with_its_labels(seed: int) -> None:
    values, columns, close = real_matrix(seed=seed)
    series = generate_candles("ETH/USDT", "1h", 6000, seed=seed)
    barrier = triple_barrier_labels(series, horizon=24)
    assert_no_leak(values, columns, close, label=barrier.y, label_valid=barrier.valid)
    direction = direction_labels(series, 4, band=0.002)
    assert_no_leak(values, columns, close, label=direction.y, label_valid=direction.valid)


def test_an_injected_future_return_is_refused_by_name() -> None:
    values, columns, close = real_matrix()
    series = generate_candles("ETH/USDT", "1h", 6000, seed=3)
    x, cols = with_column(values, columns, "future_return", forward_returns(series, 4))
    with pytest.raises(
        ValueError,
        match=r"'future_return' leaks the future: rank correlation "
        r"\+1\.00 with the 4-candle forward return",
    ):
        assert_no_leak(x, cols, close)


@pytest.mark.parametrize(
    "make",
    [
        # tomorrow's high, relative to today's close
        lambda s: np.log(np.append(s.high[1:], np.nan) / s.close),
        # a centred moving average: half its window is the future
        lambda s: np.log(np.convolve(s.close, np.ones(25) / 25, mode="same") / s.close),
        # the future return blurred with as much noise again
        lambda s: forward_returns(s, 4) * 100 + np.random.default_rng(0).normal(0, 1, len(s)),
        # future volatility
        lambda s: np.abs(forward_returns(s, 24)),
    ],
    ids=["next_high", "centred_ma", "noisy_future", "future_volatility"],
)
def test_partial_future_values_are_refused(make) -> None:
    values, columns, close = real_matrix()
    series = generate_candles("ETH/USDT", "1h", 6000, seed=3)
    x, cols = with_column(values, columns, "sneaky", make(series))
    with pytest.raises(ValueError, match="'sneaky' leaks the future"):
        assert_no_leak(x, cols, close)


def test_the_label_itself_is_refused() -> None:
    values, columns, close = real_matrix()
    series = generate_candles("ETH/USDT", "1h", 6000, seed=3)
    labels = triple_barrier_labels(series, horizon=24)
    x, cols = with_column(values, columns, "target", labels.y.astype(float))
    with pytest.raises(ValueError, match=r"'target' leaks the future: .* with the label"):
        assert_no_leak(x, cols, close, label=labels.y, label_valid=labels.valid)


def test_a_weakly_predictive_column_passes() -> None:
    # a planted signal, as a learnable synthetic market has: the guard is a net for gross leaks
    # (the causality test is the proof), so a column that only hints at the future passes
    values, columns, close = real_matrix()
    rng = np.random.default_rng(1)
    series = generate_candles("ETH/USDT", "1h", 6000, seed=3)
    hint = forward_returns(series, 1) + rng.normal(
        0, 3 * np.nanstd(forward_returns(series, 1)), 6000
    )
    x, cols = with_column(values, columns, "hint", hint)  # rank correlation about 0.3
    assert_no_leak(x, cols, close)


def test_it_is_cheap_and_refuses_what_it_cannot_judge() -> None:
    values, columns, close = real_matrix(n=40_000)
    started = time.perf_counter()
    assert_no_leak(values, columns, close)
    assert time.perf_counter() - started < 2.0
    with pytest.raises(ValueError, match="needs 200 rows"):
        assert_no_leak(values[:300], columns, close[:300])
    with pytest.raises(ValueError, match="does not match"):
        assert_no_leak(values[:, :3], columns, close)
    with pytest.raises(ValueError, match="label has 10 rows"):
        assert_no_leak(values, columns, close, label=np.zeros(10))
