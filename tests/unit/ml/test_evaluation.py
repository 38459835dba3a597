"""Out-of-sample scores and their noise band, against hand-computed values and sklearn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as sk

from core.ml.evaluation import (
    auc_iid_sigma,
    auc_shift_sigma,
    balanced_accuracy,
    brier,
    calibration_error,
    calibration_table,
    score,
    versus_chance,
)
from core.ml.metrics import roc_auc


def _random(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random(n), (rng.random(n) < 0.35).astype(np.int8)


def test_balanced_accuracy_and_brier_agree_with_sklearn() -> None:
    p, y = _random(500, 1)
    p[:40] = 0.5  # the threshold itself says 1
    assert balanced_accuracy(p, y) == pytest.approx(sk.balanced_accuracy_score(y, p >= 0.5))
    assert brier(p, y) == pytest.approx(sk.brier_score_loss(y, p))
    assert balanced_accuracy(p, np.ones(500)) is None  # one class: undefined


def test_balanced_accuracy_by_hand() -> None:
    # positives 1, 1, 0 said as 1, 1, 0 -> TPR 2/3; negatives said 1, 0 -> TNR 1/2
    p = [0.9, 0.6, 0.2, 0.7, 0.1]
    y = [1, 1, 1, 0, 0]
    assert balanced_accuracy(p, y) == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_calibration_table_by_hand() -> None:
    p = [0.05, 0.15, 0.12, 0.95, 1.0]
    y = [0, 1, 0, 1, 1]
    table = calibration_table(p, y, bins=10)
    assert [b.rows for b in table] == [1, 2, 0, 0, 0, 0, 0, 0, 0, 2]  # 1.0 is in the last bin
    first, second, last = table[0], table[1], table[9]
    assert (first.mean_p, first.observed) == (pytest.approx(0.05), 0.0)
    assert (second.mean_p, second.observed) == (pytest.approx(0.135), 0.5)
    assert (last.mean_p, last.observed) == (pytest.approx(0.975), 1.0)
    assert table[2].mean_p is None and table[2].observed is None
    # two standard errors of (k + 1) / (n + 2): 1 of 1 -> 2/3, 2 * sqrt(2/9 / 1)
    assert first.observed_2se == pytest.approx(2 * math.sqrt((1 / 3) * (2 / 3) / 1))
    # (1 * 0.05 + 2 * |0.5 - 0.135| + 2 * |1 - 0.975|) / 5
    assert calibration_error(table) == pytest.approx((0.05 + 0.73 + 0.05) / 5)


def test_the_iid_sigma_of_the_auc_by_hand_and_by_simulation() -> None:
    # sqrt((n0 + n1 + 1) / (12 n0 n1)) with 50 and 50: sqrt(101 / 30000)
    assert auc_iid_sigma(50, 50) == pytest.approx(0.058023, abs=1e-6)
    assert auc_iid_sigma(0, 10) is None
    rng = np.random.default_rng(2)
    y = np.repeat([0, 1], 50)
    aucs = [roc_auc(rng.random(100), y) for _ in range(2000)]
    assert np.std(aucs) == pytest.approx(auc_iid_sigma(50, 50), rel=0.1)


def test_the_shift_sigma_is_the_iid_one_on_independent_rows() -> None:
    p, y = _random(3000, 4)
    shift = auc_shift_sigma([(p, y)], horizon=24)
    assert shift == pytest.approx(auc_iid_sigma(int(y.sum()), int((1 - y).sum())), rel=0.3)


def test_the_shift_sigma_widens_with_serial_correlation() -> None:
    # Slowly wandering predictions and label rates, independent of each other: rows are far
    # from independent, and so are their AUCs (the iid band would call this skill).
    rng = np.random.default_rng(5)
    n = 3000
    level = np.convolve(rng.normal(size=n + 199), np.ones(200) / 200, "valid")
    p = 0.4 + 3 * level
    wander = np.convolve(rng.normal(size=n + 199), np.ones(200) / 200, "valid")
    rate = np.clip(0.35 + 3 * wander, 0.02, 0.98)
    y = (rng.random(n) < rate).astype(np.int8)
    shift = auc_shift_sigma([(p, y)], horizon=24)
    iid = auc_iid_sigma(int(y.sum()), int(n - y.sum()))
    assert shift is not None and iid is not None and shift > 2 * iid


def test_a_group_too_short_to_shift_has_no_band() -> None:
    p, y = _random(90, 6)
    assert auc_shift_sigma([(p, y)], horizon=24) is None  # under 4 horizons + 2


def test_versus_chance() -> None:
    assert versus_chance(0.56, 0.02) == "above chance"
    assert versus_chance(0.53, 0.02) == "within noise of chance"
    assert versus_chance(0.44, 0.02) == "below chance"
    assert versus_chance(None, 0.02) == "undefined"


def test_a_score_card_of_a_model_that_knows_and_of_one_that_does_not() -> None:
    rng = np.random.default_rng(7)
    y = (rng.random(4000) < 0.35).astype(np.int8)
    knows = np.clip(0.35 + 0.2 * (y - 0.35) + 0.15 * rng.normal(size=4000), 0.01, 0.99)
    guesses = np.clip(0.35 + 0.15 * rng.normal(size=4000), 0.01, 0.99)
    groups = [(knows[:2000], y[:2000]), (knows[2000:], y[2000:])]
    card = score("knows", groups, threshold=0.6, horizon=24)
    assert card.rows == 4000 and card.positives == int(y.sum())
    assert card.auc == pytest.approx(sk.roc_auc_score(y, knows))
    assert card.log_loss == pytest.approx(sk.log_loss(y, knows))
    assert card.log_loss_constant == pytest.approx(sk.log_loss(y, np.full(4000, y.mean())))
    assert card.brier_constant == pytest.approx(y.mean() * (1 - y.mean()))
    assert card.chance == "above chance" and card.band is not None
    assert card.rows_at_threshold == int((knows >= 0.6).sum())
    assert card.hit_rate_at_threshold == pytest.approx(y[knows >= 0.6].mean())
    assert card.majority_accuracy == pytest.approx(1 - y.mean())
    blind = score("guesses", [(guesses, y)], threshold=0.6, horizon=24)
    assert blind.chance == "within noise of chance"
    with pytest.raises(ValueError, match="no rows to score"):
        score("none", [], threshold=0.6, horizon=24)


def test_pooled_symbols_with_different_levels_and_base_rates_are_not_timing_skill() -> None:
    # Within each symbol P knows nothing; only its level differs between the symbols, as does
    # their base rate. Pooled, the AUC is high, and so it is under every shift: the null's
    # centre is there, not at 0.5.
    rng = np.random.default_rng(0)

    def symbol(level: float, base: float) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(rng.random(125) < base, 12).astype(np.int8)
        return level + 0.05 * rng.normal(size=1500), y

    card = score("ensemble", [symbol(0.45, 0.35), symbol(0.55, 0.65)], threshold=0.6, horizon=12)
    assert card.auc is not None and card.auc > 0.6
    assert card.auc_null_mean is not None and card.auc_null_mean > 0.6
    assert card.chance == "within noise of chance", (card.auc, card.band)
    assert card.band is not None and card.band[0] < card.auc < card.band[1]


def test_one_symbol_s_null_is_centred_near_one_half() -> None:
    p, y = _random(2000, 4)
    card = score("m", [(p, y)], threshold=0.6, horizon=12)
    assert card.auc_null_mean == pytest.approx(0.5, abs=0.01)
