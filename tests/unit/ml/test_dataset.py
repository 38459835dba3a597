"""Features and labels joined into training rows, pooled across symbols and split in time."""

from __future__ import annotations

import numpy as np
import pytest

from core.market.synthetic import generate_candles
from core.ml.dataset import build_dataset, pool
from core.ml.features import FeatureConfig, compute_features
from core.ml.labels import direction_labels, triple_barrier_labels
from core.ml.splits import purged_walk_forward

HOUR_MS = 3_600_000


def test_rows_are_those_with_features_and_a_known_label() -> None:
    series = generate_candles("ETH/USDT", "1h", 800, seed=1)
    fm = compute_features(series)
    labels = triple_barrier_labels(series, horizon=24)
    ds = build_dataset(fm, labels, "ETH/USDT")
    assert ds.row[0] == fm.first_valid
    assert ds.row[-1] <= 800 - 2  # the last candle has no entry
    assert np.isfinite(ds.X).all() and ds.X.shape == (len(ds), len(fm.columns))
    assert np.array_equal(ds.X, fm.values[ds.row])
    assert np.array_equal(ds.y, labels.y[ds.row])
    assert (ds.end_ms > ds.start_ms).all() and ds.set_hash == fm.set_hash
    assert ds.label == labels.name and set(ds.symbol.tolist()) == {"ETH/USDT"}


def test_features_and_labels_of_different_candles_are_refused() -> None:
    series = generate_candles("ETH/USDT", "1h", 400, seed=1)
    with pytest.raises(ValueError, match="not of the same candles"):
        build_dataset(compute_features(series), triple_barrier_labels(series.slice(1)), "ETH/USDT")


def test_pooled_symbols_split_in_time_without_overlap() -> None:
    parts = []
    for i, symbol in enumerate(("BTC/USDT", "ETH/USDT")):
        # the second symbol's history starts later and has other prices
        series = generate_candles(
            symbol, "1h", 1500, seed=i, start_ms=1_704_067_200_000 + i * 300 * HOUR_MS
        )
        parts.append(build_dataset(compute_features(series), triple_barrier_labels(series), symbol))
    ds = pool(parts)
    assert len(ds) == len(parts[0]) + len(parts[1])
    assert (np.diff(ds.start_ms) >= 0).all()
    folds = list(
        purged_walk_forward(
            ds.start_ms, ds.end_ms, train_candles=600, step=168, embargo=24, candle_ms=HOUR_MS
        )
    )
    assert len(folds) >= 4
    for f in folds:
        assert (ds.end_ms[f.train_idx] + 24 * HOUR_MS < ds.start_ms[f.test_idx].min()).all()
        assert (ds.start_ms[f.train_idx] >= f.test_start - 600 * HOUR_MS).all()
        assert f.test_stop - f.test_start == 168 * HOUR_MS
    # blocks hold every symbol trading then: both at first, only ETH after BTC's history ends
    assert set(ds.symbol[folds[0].test_idx].tolist()) == {"BTC/USDT", "ETH/USDT"}
    assert set(ds.symbol[folds[-1].test_idx].tolist()) == {"ETH/USDT"}


def test_pooling_other_feature_sets_or_labels_is_refused() -> None:
    series = generate_candles("ETH/USDT", "1h", 400, seed=1)
    base = build_dataset(compute_features(series), triple_barrier_labels(series), "ETH/USDT")
    htf = build_dataset(
        compute_features(series, FeatureConfig(higher_timeframe="4h")),
        triple_barrier_labels(series),
        "ETH/USDT",
    )
    other_label = build_dataset(compute_features(series), direction_labels(series, 4), "ETH/USDT")
    for other in (htf, other_label):
        with pytest.raises(ValueError, match="cannot pool"):
            pool([base, other])
