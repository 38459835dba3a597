"""A trained model version as the registry records it: data, not a file.

The artifact itself (model, metadata, manifest) lives under
``<data_dir>/models/<member>/<id>/``; the version records where (relative to the data dir, so
the folder can move) and the sha256 of its manifest, which covers every file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class ModelStatus(StrEnum):
    """Where a version is in its life; the learning manager moves it (a later issue)."""

    CANDIDATE = "CANDIDATE"  # trained and saved, not trusted yet
    SHADOW = "SHADOW"  # predicting alongside the champion, not trading
    CHAMPION = "CHAMPION"  # the one that trades
    RETIRED = "RETIRED"


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelVersion:
    """One trained member: its window, features, scores and artifact."""

    id: str
    member: str  # "xgb", "lgbm", ...
    status: ModelStatus
    train_start_ms: int
    train_end_ms: int  # exclusive
    feature_set_hash: str
    metrics: Mapping[str, float] = field(default_factory=dict)  # validation, out of sample
    artifact_path: str  # relative to the data dir: models/<member>/<id>
    artifact_sha256: str  # of the artifact's manifest.json
    created_ms: int
    # when it first became CHAMPION; kept through retirement so retention never prunes a
    # version that once traded (a rollback target)
    promoted_ms: int | None = None
