"""The drift check's feature sample: a champion's training rows against its live rows."""

from __future__ import annotations

import numpy as np

from bot.learning import feature_sample
from core.domain.model_versions import ModelStatus, ModelVersion
from core.ml.feature_set import FeatureMatrix

HOUR = 3_600_000
T0 = 1_704_067_200_000


def matrix(n: int, offset: float) -> FeatureMatrix:
    ts = T0 + np.arange(n, dtype=np.int64) * HOUR
    values = np.column_stack([np.arange(n, dtype=np.float64) + offset, -np.arange(n) - offset])
    return FeatureMatrix(ts_ms=ts, values=values, columns=("a", "b"), set_hash="h", first_valid=0)


def champion() -> ModelVersion:
    return ModelVersion(
        id="xgb-1",
        member="xgb",
        status=ModelStatus.CHAMPION,
        train_start_ms=T0 + 10 * HOUR,
        train_end_ms=T0 + 20 * HOUR,  # exclusive
        feature_set_hash="h",
        metrics={},
        artifact_path="models/xgb/xgb-1",
        artifact_sha256="0" * 64,
        created_ms=T0 + 30 * HOUR,
        status_ms=T0 + 40 * HOUR,
    )


def test_training_rows_are_its_window_and_live_rows_the_newest_closed_since_promotion() -> None:
    btc, eth = matrix(400, 0.0), matrix(400, 1000.0)

    train, live = feature_sample(
        [btc, eth], [btc, eth], champion(), tf_ms=HOUR, now_ms=T0 + 361 * HOUR, live_rows=60
    )

    # rows 10..19 of each symbol
    assert list(train["a"]) == [*range(10, 20), *range(1010, 1020)]
    # promoted at row 40; the newest 60 closed by now (row 360 closes at 361 h: now)
    assert list(live["a"]) == [*range(301, 361), *range(1301, 1361)]
    assert list(live["b"]) == [-v for v in live["a"]]


def test_too_short_a_live_record_gives_no_live_values() -> None:
    btc = matrix(100, 0.0)
    _, live = feature_sample(
        [btc], [btc], champion(), tf_ms=HOUR, now_ms=T0 + 99 * HOUR, live_rows=500
    )
    assert live == {}  # 59 live rows since the promotion: under 100
