"""Walk-forward folds of candidates: consecutive test folds after a training-only first part,
each trained only on trades closed by its start (the purge)."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigError, DataError
from core.ml.rl.candidates import Candidates
from core.ml.rl.folds import sizing_folds
from tests.unit.ml.rl.synthetic import HOUR_MS, START_MS, candidates


def _at(decisions: list[int], closes: list[int]) -> Candidates:
    n = len(decisions)
    return Candidates(
        decision_ms=START_MS + np.asarray(decisions) * HOUR_MS,
        close_ms=START_MS + np.asarray(closes) * HOUR_MS,
        features=np.zeros((n, 1)),
        feature_names=("x",),
        unit_outcome=np.zeros(n),
    )


def test_folds_cover_the_later_candidates_in_order_and_train_on_closed_ones_only() -> None:
    c = candidates(500, seed=3)
    folds = sizing_folds(c, 5, min_train=20)
    assert len(folds) == 4
    tested = np.concatenate([f.test for f in folds])
    np.testing.assert_array_equal(tested, np.arange(folds[0].test[0], len(c)))
    for fold in folds:
        assert fold.start_ms == c.decision_ms[fold.test[0]]
        assert (c.close_ms[fold.train] <= fold.start_ms).all()
        before = np.arange(fold.test[0])
        # Every candidate before the fold that had closed by its start trains, no other.
        np.testing.assert_array_equal(fold.train, before[c.close_ms[before] <= fold.start_ms])
    # The trades open across a fold's start are what the purge drops: there are some.
    assert sum(fold.test[0] - len(fold.train) for fold in folds) > 0


def test_a_trade_still_open_at_the_fold_start_is_purged() -> None:
    # Decisions at hours 0..5; the second trade runs to hour 9, past the fold's start (3).
    c = _at([0, 1, 2, 3, 4, 5], [1, 9, 3, 4, 5, 6])
    (fold,) = sizing_folds(c, 2, min_train=1)
    assert fold.start_ms == START_MS + 3 * HOUR_MS
    np.testing.assert_array_equal(fold.train, [0, 2])  # 2 closed exactly at the start
    np.testing.assert_array_equal(fold.test, [3, 4, 5])


def test_decisions_at_the_same_time_stay_in_one_fold() -> None:
    c = _at([0, 1, 2, 2, 2, 3], [1, 2, 3, 3, 3, 4])
    (fold,) = sizing_folds(c, 2, min_train=1)
    np.testing.assert_array_equal(fold.test, [2, 3, 4, 5])
    np.testing.assert_array_equal(fold.train, [0, 1])


def test_too_few_candidates_or_training_trades_are_refused() -> None:
    with pytest.raises(DataError, match="fewer than 20"):
        sizing_folds(candidates(30, seed=1), 3, min_train=20)
    with pytest.raises(DataError, match="cannot make 4 folds"):
        sizing_folds(_at([0, 0, 0, 1], [1, 1, 1, 2]), 4, min_train=1)
    with pytest.raises(ConfigError):
        sizing_folds(candidates(30, seed=1), 1, min_train=1)
    with pytest.raises(ConfigError):
        sizing_folds(candidates(30, seed=1), 2, min_train=0)
