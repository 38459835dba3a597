"""Train members on candles: features, the default triple-barrier label, a purged holdout.

``prepare`` turns candle series into training and validation rows: the feature set, the
triple-barrier label (TP1 before the stop within ``horizon`` candles, the Exit Brain's
barriers), the leak guard, and a split in time: the most recent ``validation_fraction`` of
the rows is held out, and only labels that *ended* ``embargo`` candles before it began are
trained on, so no training label sees the validation window. ``fit_member`` fits one member
on them (early stopping on the holdout) and scores it on the holdout: every metric it returns
is out of sample. Both are plain functions of picklable values, so the caller can run them in
a worker process; ``fit_member`` returns the member's files as bytes (its own safe formats)
rather than the object.

``TrainConfig.shuffle_seed`` makes every training a control: the window's labels are permuted
(seeded) before the split, so a member learns nothing true and its predictions must score as
chance (``qt evaluate --shuffle-labels``).
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.brains.exit_config import ExitConfig
from core.domain.market import CandleSeries, timeframe_to_ms
from core.errors import DataError
from core.ml.dataset import build_dataset, pool
from core.ml.feature_set import FeatureMatrix
from core.ml.features import FeatureConfig, compute_features, feature_set
from core.ml.health import health
from core.ml.labels import Labels, triple_barrier_labels
from core.ml.leak_guard import assert_no_leak
from core.ml.member import Member
from core.ml.members import MEMBERS
from core.ml.metrics import accuracy, log_loss, roc_auc

FloatMatrix = npt.NDArray[np.floating]


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    """How the rows are made and split, and the hyper-parameters to override.

    ``params`` is applied to each member's own parameters where it has a field of that name
    (``n_estimators``, ``n_jobs``, ``seed`` for the tree members), so one config serves every
    member kind.
    """

    horizon: int = 24
    embargo: int = 24
    validation_fraction: float = 0.2
    min_train_rows: int = 200
    min_valid_rows: int = 50
    params: Mapping[str, Any] = field(default_factory=dict)
    # A control: permute the window's labels (training and holdout rows together) with this
    # seed and the window's end, so no member learns anything true. None: the true labels.
    shuffle_seed: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.validation_fraction < 0.5:
            raise ValueError(
                f"validation_fraction must be in (0, 0.5), was {self.validation_fraction}"
            )
        if self.horizon < 1 or self.embargo < 0:
            raise ValueError(f"need horizon >= 1, embargo >= 0: {self.horizon}, {self.embargo}")
        if self.shuffle_seed is not None and self.shuffle_seed < 0:
            raise ValueError(f"shuffle_seed must be >= 0, was {self.shuffle_seed}")


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingSet:
    """Training and validation rows of one or more symbols, with what they came from."""

    x_train: FloatMatrix
    y_train: npt.NDArray[np.int8]
    x_valid: FloatMatrix
    y_valid: npt.NDArray[np.int8]
    columns: tuple[str, ...]
    set_hash: str
    label: str
    symbols: tuple[str, ...]
    train_start_ms: int  # the first training label's decision candle
    valid_start_ms: int  # the first validation row's decision candle
    end_ms: int  # exclusive: the candle after the last one any label used


@dataclass(frozen=True, slots=True, kw_only=True)
class FitResult:
    """A fitted member as its files' bytes, and its validation scores (out of sample)."""

    member: str
    files: dict[str, bytes]
    metrics: dict[str, float]


def prepare(
    series: Sequence[CandleSeries],
    config: TrainConfig,
    exits: ExitConfig | None = None,
    features: FeatureConfig | None = None,
) -> TrainingSet:
    """Return the purged training and validation rows of ``series`` (one timeframe)."""
    if not series:
        raise DataError("training needs candles of at least one symbol")
    timeframes = {s.timeframe for s in series}
    if len(timeframes) != 1:
        raise DataError(f"training needs one timeframe, was given {sorted(timeframes)}")
    candle_ms = timeframe_to_ms(timeframes.pop())
    parts = []
    for s in series:
        fm = compute_features(s, features)
        labels = triple_barrier_labels(s, horizon=config.horizon, exits=exits)
        ds = build_dataset(fm, labels, s.symbol)
        warmup = feature_set(features, s.timeframe).warmup_candles
        if len(ds) < config.min_train_rows:
            raise DataError(
                f"{s.symbol}: {len(ds)} usable rows (of {len(s)} candles; the features need "
                f"{warmup} to warm up); training needs at least {config.min_train_rows}"
            )
        guard_features(s, fm, labels)  # a net for gross leaks before anything is fitted
        parts.append(ds)
    ds = pool(parts)
    y = ds.y
    if config.shuffle_seed is not None:
        rng = np.random.default_rng([config.shuffle_seed, int(ds.end_ms.max())])
        y = rng.permutation(y)
    cut = int(ds.start_ms[int(len(ds) * (1.0 - config.validation_fraction))])
    valid = ds.start_ms >= cut
    train = ds.end_ms + config.embargo * candle_ms < cut  # purged: ended before the holdout
    if train.sum() < config.min_train_rows or valid.sum() < config.min_valid_rows:
        raise DataError(
            f"{int(train.sum())} training and {int(valid.sum())} validation rows after "
            f"purging; need {config.min_train_rows} and {config.min_valid_rows}: give more "
            "candles"
        )
    y_train = y[train]
    if y_train.min() == y_train.max():
        raise DataError(f"every training label is {int(y_train[0])}: nothing to learn")
    return TrainingSet(
        x_train=ds.X[train],
        y_train=y_train,
        x_valid=ds.X[valid],
        y_valid=y[valid],
        columns=ds.columns,
        set_hash=ds.set_hash,
        label=ds.label,
        symbols=tuple(s.symbol for s in series),
        train_start_ms=int(ds.start_ms[train].min()),
        valid_start_ms=cut,
        end_ms=int(ds.end_ms.max()) + candle_ms,
    )


def guard_features(series: CandleSeries, features: FeatureMatrix, labels: Labels) -> None:
    """Raise ``DataError`` naming the symbol when the leak guard refuses ``features`` (a
    column that is the label or a future value, ``core.ml.leak_guard``), or cannot judge them
    (too few rows)."""
    try:
        assert_no_leak(
            features.values,
            features.columns,
            series.close,
            label=labels.y,
            label_valid=labels.valid,
        )
    except ValueError as exc:
        raise DataError(f"{series.symbol}: the leak guard refused the features: {exc}") from exc


def make_member(name: str, params: Mapping[str, Any] | None = None) -> Member:
    """Return an unfitted member of kind ``name`` with the ``params`` it knows applied."""
    cls = MEMBERS.get(name)
    if cls is None:
        raise DataError(f"unknown member {name!r}; known: {', '.join(sorted(MEMBERS))}")
    params_type = getattr(cls, "params_type", None)
    if params_type is None or not dataclasses.is_dataclass(params_type) or not params:
        return cls()
    known = {f.name for f in dataclasses.fields(params_type)}
    chosen = {k: v for k, v in params.items() if k in known}
    return cls(params_type(**chosen))  # type: ignore[call-arg, operator]


def fit_member(name: str, data: TrainingSet, params: Mapping[str, Any] | None = None) -> FitResult:
    """Fit member ``name`` on the training rows and score it on the validation rows."""
    member = make_member(name, params)
    cols, digest = data.columns, data.set_hash
    member.fit(
        data.x_train,
        data.y_train,
        columns=cols,
        feature_set_hash=digest,
        eval_set=(data.x_valid, data.y_valid),
    )
    p = member.predict_proba(data.x_valid, columns=cols, feature_set_hash=digest)
    verdict = health(p)
    if not np.isfinite(p).all():
        raise DataError(f"{name}: its validation output is unusable ({verdict.reason}); not saved")
    base = float(data.y_train.mean())
    metrics = {
        "log_loss": log_loss(p, data.y_valid),
        # a constant at the training base rate: what a model must beat to know anything
        "log_loss_base": log_loss(np.full(len(p), base), data.y_valid),
        "accuracy": accuracy(p, data.y_valid),
        "base_rate": float(data.y_valid.mean()),
        "rows_train": float(len(data.y_train)),
        "rows_valid": float(len(data.y_valid)),
        "p_std": float(p.std()),
        "healthy": 1.0 if verdict.ok else 0.0,
    }
    auc = roc_auc(p, data.y_valid)
    if auc is not None:
        metrics["auc"] = auc
    with tempfile.TemporaryDirectory(prefix="qt-member-") as tmp:
        written = member.save(Path(tmp))
        files = {path.name: path.read_bytes() for path in written}
    return FitResult(member=name, files=files, metrics=metrics)
