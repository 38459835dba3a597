"""Degenerate output detection: what takes a member out of the ensemble."""

from __future__ import annotations

import numpy as np
import pytest

from core.ml.health import Health, health
from tests.unit.ml.synthetic import COLUMNS, HASH, fitted, planted


def test_a_trained_members_output_is_healthy() -> None:
    x, _ = planted(500, seed=6)
    p = fitted("lgbm").predict_proba(x, columns=COLUMNS, feature_set_hash=HASH)

    assert health(p) == Health(True)


def test_a_constant_output_is_flagged_with_its_value() -> None:
    # The old system's PatchTST said 0.615 for every candle, unnoticed.
    verdict = health(np.full(500, 0.615) + np.random.default_rng(0).normal(0, 1e-5, 500))

    assert not verdict.ok
    assert "near-constant output" in verdict.reason and "mean 0.6150" in verdict.reason


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ([0.2, np.nan, 0.7], "1 NaN and 0 infinite of 3"),
        ([0.2, np.inf, 0.7, -np.inf], "0 NaN and 2 infinite of 4"),
        ([0.2, 1.3, 0.7], "1 of 3 predictions outside [0, 1]"),
        ([-0.1, 0.5, 0.7], "1 of 3 predictions outside [0, 1] (min -0.1"),
        ([0.4], "1 predictions, at least 2 needed"),
        ([[0.4, 0.6]], "shape (1, 2)"),
    ],
)
def test_unusable_output_is_flagged_with_the_reason(values: list[float], reason: str) -> None:
    verdict = health(np.array(values))

    assert not verdict.ok
    assert reason in verdict.reason


def test_one_sided_output_is_flagged_only_when_asked() -> None:
    # The old N-HiTS said SELL 99.6 % of the time.
    p = np.concatenate([np.linspace(0.05, 0.45, 996), [0.6, 0.7, 0.8, 0.9]])

    assert health(p).ok
    verdict = health(p, max_one_side=0.99)
    assert not verdict.ok
    assert "99.6% of 1000 predictions on the down side" in verdict.reason


def test_the_threshold_is_a_parameter() -> None:
    p = np.linspace(0.50, 0.51, 100)  # std ~0.003

    assert health(p).ok
    assert not health(p, min_std=0.01).ok
