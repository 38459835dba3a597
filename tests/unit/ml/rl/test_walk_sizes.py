"""The sizing walk-forward: the simple sizers read only what was known at each decision, and
on candidates whose confidence says which trades pay, PPO beats fixed sizing out of sample
while its shuffled-reward control does not."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import DataError
from core.ml.rl.candidates import Candidates
from core.ml.rl.folds import sizing_folds
from core.ml.rl.policy import PpoParams
from core.ml.rl.scorecard import BEYOND_NOISE, beats_baseline, score_methods
from core.ml.rl.walk_sizes import (
    WalkSizesConfig,
    oos_indices,
    rl_sizes,
    simple_sizes,
    training_set,
)
from tests.unit.ml.rl.synthetic import candidates, with_volatility

# ~8 s a training on one core: enough for the confidence rule (tests/unit/ml/rl/test_policy.py).
BUDGET = PpoParams(
    total_timesteps=8_192, n_steps=512, batch_size=64, n_epochs=5, learning_rate=1e-3, seed=0
)


def test_simple_sizes_read_only_what_was_known_at_each_decision() -> None:
    c = with_volatility(300, seed=4)
    config = WalkSizesConfig(folds=3, record_trades=30)
    folds = sizing_folds(c, config.folds, min_train=config.min_train)
    sizes = simple_sizes(c, folds, config)
    oos = oos_indices(folds)
    assert all(len(v) == len(oos) for v in sizes.values())
    assert (sizes["fixed"] == 1.0).all()
    # Kelly's record: a candidate still open at a decision changes nothing of its size, nor
    # does anything decided later; the vol target of a fold is its training's median.
    k = len(oos) // 2
    i = int(oos[k])
    unknown = c.close_ms > c.decision_ms[i]
    altered = c.with_outcomes(np.where(unknown, -0.5, c.unit_outcome))
    again = simple_sizes(altered, folds, config)
    assert again["kelly"][k] == sizes["kelly"][k]
    assert not np.array_equal(again["kelly"], sizes["kelly"])  # later ones do see it
    vol = c.features[:, 1]
    target = float(np.median(vol[folds[0].train]))
    first = folds[0].test
    np.testing.assert_allclose(
        sizes["vol_target"][: len(first)], np.clip(target / vol[first], 0.0, 1.5)
    )


def test_a_losing_record_sizes_kelly_to_zero_and_a_winning_one_up() -> None:
    c = with_volatility(200, seed=5)
    config = WalkSizesConfig(folds=2)
    folds = sizing_folds(c, 2, min_train=20)
    losing = simple_sizes(c.with_outcomes(np.full(len(c), -0.01)), folds, config)["kelly"]
    assert (losing == 0.0).all()
    mixed = np.where(np.arange(len(c)) % 4 == 0, -0.01, 0.02)  # p 0.75, W 2, L 1
    winning = simple_sizes(c.with_outcomes(mixed), folds, config)["kelly"]
    assert winning.min() > 1.0  # a quarter of m* = 0.75 / 0.01 - 0.25 / 0.02: the cap


def test_volatility_targeting_needs_the_volatility_feature() -> None:
    c = candidates(100, seed=1)  # confidence and noise only
    with pytest.raises(DataError, match="realised_vol"):
        simple_sizes(c, sizing_folds(c, 2, min_train=10), WalkSizesConfig())


def _scores(c: Candidates, rl: np.ndarray, control: np.ndarray, folds: tuple) -> dict:
    oos = oos_indices(folds)
    sizes = simple_sizes(c, folds, WalkSizesConfig(folds=len(folds) + 1))
    sizes |= {"rl": rl, "control": control}
    scores = score_methods(
        c.take(oos),
        np.full(len(oos), 0.5),
        sizes,
        baseline="fixed",
        controls=frozenset({"control"}),
    )
    return {s.method: s for s in scores}


@pytest.mark.slow
def test_ppo_beats_fixed_sizing_out_of_sample_and_its_shuffled_control_does_not() -> None:
    c = with_volatility(800, seed=1)
    folds = sizing_folds(c, 2, min_train=20)
    config = WalkSizesConfig(folds=2, ppo=BUDGET)
    rl = rl_sizes(c, folds, config.env, config.ppo)
    control = rl_sizes(c, folds, config.env, config.ppo, shuffle_seed=0)
    s = _scores(c, rl, control, folds)

    assert beats_baseline(s["rl"]) and s["rl"].above_baseline > 0.999
    assert s["rl"].sharpe > s["fixed"].sharpe + 5.0
    assert s["rl"].final_equity > s["fixed"].final_equity
    assert not beats_baseline(s["control"]), s["control"]
    assert s["control"].above_baseline <= BEYOND_NOISE
    assert s["control"].dsr is None and s["rl"].dsr is not None
    # It learned which trades pay: larger where confidence is high than where it is low.
    confident = c.features[oos_indices(folds), 0] > 0.5
    assert rl[confident].mean() > rl[~confident].mean() + 0.5


def test_the_control_trains_on_the_folds_outcomes_permuted_and_nothing_else() -> None:
    c = with_volatility(300, seed=2)
    folds = sizing_folds(c, 3, min_train=20)
    for k, fold in enumerate(folds):
        true = training_set(c, fold, k, None)
        shuffled = training_set(c, fold, k, 3)
        assert len(true) == len(fold.train) and (true.close_ms <= fold.start_ms).all()
        np.testing.assert_array_equal(shuffled.features, true.features)
        np.testing.assert_array_equal(shuffled.close_ms, true.close_ms)
        np.testing.assert_array_equal(np.sort(shuffled.unit_outcome), np.sort(true.unit_outcome))
        assert not np.array_equal(shuffled.unit_outcome, true.unit_outcome)
        # Seeded, and by fold: the same seed gives the same permutation, folds their own.
        np.testing.assert_array_equal(
            training_set(c, fold, k, 3).unit_outcome, shuffled.unit_outcome
        )
        assert not np.array_equal(training_set(c, fold, k, 4).unit_outcome, shuffled.unit_outcome)
