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
