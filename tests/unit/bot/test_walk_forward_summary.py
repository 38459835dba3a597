"""The walk-forward's one-line summary: a retrain whose every fit failed made no set active."""

from __future__ import annotations

from bot.walk_forward import summary, walk_forward_ensemble
from core.config import load_settings
from core.ml.walk_forward import TrainedSet

DAY_MS = 86_400_000
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC


def test_the_first_active_set_is_the_first_that_fitted_a_member() -> None:
    _, trainer = walk_forward_ensemble(load_settings())
    trainer.trained = [
        TrainedSet(
            active_from_ms=T0,
            train_start_ms=T0 - 30 * DAY_MS,
            train_end_ms=T0,
            members=(),
            failures=(("xgb", "DataError: too few rows"), ("lgbm", "DataError: too few rows")),
        ),
        TrainedSet(
            active_from_ms=T0 + 7 * DAY_MS,
            train_start_ms=T0 - 30 * DAY_MS,
            train_end_ms=T0 + 7 * DAY_MS,
            members=("xgb", "lgbm"),
        ),
    ]

    line = summary(trainer)

    assert line.startswith(
        "walk-forward: 2 model(s) trained in 2 retrain(s), the first active from "
        "2024-01-08 00:00 UTC, the last from 2024-01-08 00:00 UTC; failed: xgb at 2024-01-01"
    ), line
