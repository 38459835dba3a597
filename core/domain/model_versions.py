"""A trained model version as the registry records it: data, not a file.

The artifact itself (model, metadata, manifest) lives under
``<data_dir>/models/<member>/<id>/``; the version records where (relative to the data dir, so
the folder can move) and the sha256 of its manifest, which covers every file. A ``Prediction``
is what one version said at one candle, kept so the live record can be audited and a restart
loses none of a shadow's scores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import field, replace
from enum import StrEnum
from numbers import Real
from typing import Any

from core.values import value_class


class ModelStatus(StrEnum):
    """Where a version is in its life; the learning manager moves it. At most one version
    of a member is CHAMPION at a time (the registry enforces it)."""

    CANDIDATE = "CANDIDATE"  # trained and saved, not trusted yet
    SHADOW = "SHADOW"  # predicting alongside the champion, not trading
    CHAMPION = "CHAMPION"  # the one that trades
    RETIRED = "RETIRED"


@value_class(frozen=True, slots=True, kw_only=True)
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
    symbols: tuple[str, ...] = ()  # the symbols its rows were pooled from
    params: Mapping[str, Any] = field(default_factory=dict)  # hyper-parameters, JSON-safe
    libraries: Mapping[str, str] = field(default_factory=dict)  # library versions
    reason: str = ""  # why it has its status: "gate passed: ...", "replaced by <id>", ...
    promoted_ms: int | None = None  # when it first became CHAMPION; never cleared
    status_ms: int | None = None  # when its status last changed (None: never since saved)


# --- status changes: the same rules for every registry implementation ---------------------------


def earlier_champions(versions: Sequence[ModelVersion], current: str) -> list[ModelVersion]:
    """Return the versions that served as champion before ``current`` and may serve again,
    the most recently serving first (by when they left: ``status_ms``); a version rolled
    back (its reason says so) is not one to go back to."""
    earlier = [
        v
        for v in versions
        if v.promoted_ms is not None
        and v.id != current
        and v.status is not ModelStatus.CHAMPION
        and not v.reason.startswith(ROLLED_BACK)
    ]
    return sorted(earlier, key=lambda v: (v.status_ms or 0, v.promoted_ms or 0), reverse=True)


ROLLED_BACK = "rolled back"  # the reason's start of a champion retired by a rollback


def with_status(
    version: ModelVersion, status: ModelStatus, *, reason: str, ts_ms: int
) -> ModelVersion:
    """Return ``version`` moved to ``status`` (any but CHAMPION: ``promoted`` does that)
    for ``reason`` at ``ts_ms``; the same status again only takes the new reason (safe to
    repeat: a rollback says why the champion it retired went)."""
    status = ModelStatus(status)
    if status is ModelStatus.CHAMPION:
        raise ValueError(f"model version {version.id}: use promote to make it CHAMPION")
    if status is version.status:
        return version if reason == version.reason else replace(version, reason=reason)
    return replace(version, status=status, reason=reason, status_ms=ts_ms)


def promoted(version: ModelVersion, *, reason: str, ts_ms: int) -> ModelVersion:
    """Return ``version`` as CHAMPION, keeping the time it first became one; the champion
    already changes nothing."""
    if version.status is ModelStatus.CHAMPION:
        return version
    first = ts_ms if version.promoted_ms is None else version.promoted_ms
    return replace(
        version, status=ModelStatus.CHAMPION, reason=reason, status_ms=ts_ms, promoted_ms=first
    )


def replaced(champion: ModelVersion, by: str, *, ts_ms: int) -> ModelVersion:
    """Return the champion ``by`` replaces, RETIRED (its ``promoted_ms`` stays)."""
    return replace(
        champion, status=ModelStatus.RETIRED, reason=f"replaced by {by}", status_ms=ts_ms
    )


PREDICTION_ROLES = ("champion", "shadow")


@value_class(frozen=True, slots=True, kw_only=True)
class Prediction:
    """What one version predicted for one symbol at one decision candle."""

    version_id: str
    member: str
    symbol: str
    ts_ms: int  # open time of the candle the prediction was made at (decision candle)
    p_up: float  # in [0, 1]
    role: str  # "champion" or "shadow"
    created_ms: int


def check_predictions(predictions: Sequence[Prediction]) -> None:
    """Raise ``ValueError`` naming the first prediction whose ``p_up`` is not a probability
    (outside [0, 1], NaN) or whose role is unknown: a repository checks all before it writes."""
    for p in predictions:
        real = isinstance(p.p_up, Real) and not isinstance(p.p_up, bool)
        if not (real and math.isfinite(p.p_up) and 0 <= p.p_up <= 1):
            raise ValueError(
                f"prediction of {p.version_id} for {p.symbol} at {p.ts_ms}: p_up was "
                f"{p.p_up!r}, not a probability in [0, 1]"
            )
        if p.role not in PREDICTION_ROLES:
            raise ValueError(
                f"prediction of {p.version_id} for {p.symbol} at {p.ts_ms}: role was "
                f"{p.role!r}, not one of {', '.join(PREDICTION_ROLES)}"
            )
