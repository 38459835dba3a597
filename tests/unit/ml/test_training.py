"""Training rows (purged holdout) and one member's fit, scored out of sample."""

from __future__ import annotations

import numpy as np
import pytest

from core.domain.market import timeframe_to_ms
from core.errors import DataError
from core.market.synthetic import generate_candles
from core.ml.members import MEMBERS
from core.ml.metrics import roc_auc
from core.ml.training import TrainConfig, fit_member, make_member, prepare

H = timeframe_to_ms("1h")
SMALL = {"n_estimators": 10, "n_jobs": 1}


def candles(symbol: str = "BTC/USDT", n: int = 1200):
    return generate_candles(symbol, "1h", n, seed=2)


def test_the_holdout_is_the_most_recent_part_and_no_training_label_reaches_it() -> None:
    config = TrainConfig(embargo=24, validation_fraction=0.25)

    data = prepare([candles(), candles("ETH/USDT")], config)

    assert len(data.y_valid) > 0 and len(data.y_train) > 0
    assert data.symbols == ("BTC/USDT", "ETH/USDT")
    # rebuild the spans to check the purge: the trainer keeps only labels that ended an
    # embargo before the holdout's first decision candle
    from core.ml.dataset import build_dataset, pool
    from core.ml.features import compute_features
    from core.ml.labels import triple_barrier_labels

    ds = pool(
        [
            build_dataset(compute_features(s), triple_barrier_labels(s), s.symbol)
            for s in (candles(), candles("ETH/USDT"))
        ]
    )
    trained = ds.end_ms + 24 * H < data.valid_start_ms
    assert trained.sum() == len(data.y_train)
    assert (ds.start_ms >= data.valid_start_ms).sum() == len(data.y_valid)
    assert data.end_ms == int(ds.end_ms.max()) + H


def test_too_few_candles_is_one_clear_error() -> None:
    with pytest.raises(DataError, match=r"BTC/USDT: \d+ usable rows .* at least 200"):
        prepare([candles(n=400)], TrainConfig())


@pytest.mark.parametrize("name", ["lgbm", "xgb"])  # the trees `qt models train` fits (SMALL)
def test_a_fitted_member_comes_back_as_files_that_predict_the_same(name: str) -> None:
    data = prepare([candles()], TrainConfig())

    result = fit_member(name, data, SMALL)

    rebuilt = MEMBERS[name].from_files(result.files)
    p = rebuilt.predict_proba(data.x_valid, columns=data.columns, feature_set_hash=data.set_hash)
    assert result.metrics["rows_valid"] == len(data.y_valid)
    assert result.metrics["auc"] == pytest.approx(roc_auc(p, data.y_valid))
    assert rebuilt.params["n_estimators"] == 10 and rebuilt.params["n_jobs"] == 1
    assert {"log_loss", "log_loss_base", "accuracy", "base_rate", "healthy"} <= set(result.metrics)


def test_parameters_a_member_does_not_have_are_not_passed_to_it() -> None:
    member = make_member("xgb", {"n_estimators": 7, "max_steps": 3})
    assert member.params["n_estimators"] == 7
    with pytest.raises(DataError, match="unknown member 'nope'"):
        make_member("nope")


def test_roc_auc_counts_ties_half_and_needs_both_classes() -> None:
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert roc_auc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5
    assert roc_auc(np.array([0.2, 0.3]), np.array([1, 1])) is None


def test_a_shuffle_seed_permutes_the_window_s_labels_and_nothing_else() -> None:
    series = [candles(), candles("ETH/USDT")]
    true = prepare(series, TrainConfig())
    shuffled = prepare(series, TrainConfig(shuffle_seed=3))
    again = prepare(series, TrainConfig(shuffle_seed=3))
    other = prepare(series, TrainConfig(shuffle_seed=4))

    assert np.array_equal(shuffled.x_train, true.x_train, equal_nan=True)
    assert np.array_equal(shuffled.x_valid, true.x_valid, equal_nan=True)
    assert not np.array_equal(shuffled.y_train, true.y_train)
    assert np.array_equal(shuffled.y_train, again.y_train)  # seeded
    assert np.array_equal(shuffled.y_valid, again.y_valid)
    assert not np.array_equal(shuffled.y_train, other.y_train)
    # A permutation of the rows' labels: about the same share of 1s, and no longer the truth
    # (agreement with the true labels as by chance: p^2 + (1 - p)^2).
    rate = true.y_train.mean()
    assert abs(shuffled.y_train.mean() - rate) < 0.05
    agree = (shuffled.y_train == true.y_train).mean()
    assert abs(agree - (rate**2 + (1 - rate) ** 2)) < 0.05
    with pytest.raises(ValueError, match="shuffle_seed must be >= 0"):
        TrainConfig(shuffle_seed=-1)


def test_the_leak_guard_refuses_a_future_column_naming_the_symbol() -> None:
    from core.ml.feature_set import FeatureMatrix
    from core.ml.features import compute_features
    from core.ml.labels import triple_barrier_labels
    from core.ml.training import guard_features

    s = candles()
    fm, labels = compute_features(s), triple_barrier_labels(s)
    guard_features(s, fm, labels)  # the feature set as it is passes
    ahead = np.full(len(s), np.nan)
    ahead[:-4] = np.log(s.close[4:] / s.close[:-4])  # the next 4 candles' return
    leaky = FeatureMatrix(
        ts_ms=fm.ts_ms,
        values=np.column_stack([fm.values, ahead]),
        columns=(*fm.columns, "peek"),
        set_hash=fm.set_hash,
        first_valid=fm.first_valid,
    )
    with pytest.raises(DataError, match=r"BTC/USDT: the leak guard refused .*'peek' leaks"):
        guard_features(s, leaky, labels)
