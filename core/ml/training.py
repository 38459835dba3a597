"""Train members on candles: features, the default triple-barrier label, a purged holdout.

``prepare`` turns candle series into training and validation rows: the feature set, the
triple-barrier label (TP1 before the stop within ``horizon`` candles, the Exit Brain's
barriers), the leak guard, and a split in time: the most recent ``validation_fraction`` of
the rows is held out, and only labels that *ended* ``embargo`` candles before it began are
trained on, so no training label sees the validation window. ``fit_member`` fits one member
on them (early stopping on the holdout) and scores it on the holdout: every metric it returns
is out of sample. The torch forecasters read one symbol's consecutive candles, not pooled
rows: ``prepare`` also cuts each symbol's rows into ``Segment``s (``core.ml.segments``) at the
same holdout and purge, and ``fit_member`` fits them on those (optionally warm-started from a
previous version's files). Both are plain functions of picklable values, so the caller can
run them in a worker process; ``fit_member`` returns the member's files as bytes (its own
safe formats) rather than the object.

``fit_candidate`` is ``fit_member`` for a retrain that must beat the serving model: it also
returns, per validation row it scored (symbol, decision candle), the candidate's and the
champion's P(up), the champion rebuilt from its files and asked about the same rows, so the
two can be compared row by row (the rows the champion was trained on are NaN: in sample).

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
from core.ml.dataset import Dataset, IntArray, build_dataset, pool
from core.ml.feature_set import FeatureMatrix
from core.ml.features import FeatureConfig, compute_features, feature_set
from core.ml.health import health
from core.ml.labels import Labels, triple_barrier_labels
from core.ml.leak_guard import assert_no_leak
from core.ml.member import Member
from core.ml.members import MEMBERS
from core.ml.members.forecaster import ForecastMember
from core.ml.metrics import accuracy, log_loss, roc_auc
from core.ml.segments import Segment, split_segments, validation_index, validation_labels

FloatMatrix = npt.NDArray[np.floating]
Probabilities = npt.NDArray[np.float64]


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
    # Also cut the rows into per-symbol segments (the torch members'): off when only pooled
    # members fit, as the segments triple what a worker is sent.
    with_segments: bool = True
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
    # The same rows per symbol as runs of consecutive candles, split at the same holdout:
    # what the members that form windows of consecutive rows train on.
    segments: tuple[Segment, ...] = ()
    # Which row of x_valid/y_valid is which: its decision candle's open time and its symbol.
    valid_ts_ms: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    valid_symbol: npt.NDArray[np.str_] = field(default_factory=lambda: np.zeros(0, dtype=np.str_))


@dataclass(frozen=True, slots=True, kw_only=True)
class FitResult:
    """A fitted member as its files' bytes, and its validation scores (out of sample)."""

    member: str
    files: dict[str, bytes]
    metrics: dict[str, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class SymbolRows:
    """One symbol's rows, checked (``prepare_symbol``): what ``combine`` pools and splits."""

    symbol: str
    timeframe: str
    dataset: Dataset
    # every candle's, for the segments (None when the config makes none: less to send back)
    candles: tuple[FeatureMatrix, Labels] | None


def prepare(
    series: Sequence[CandleSeries],
    config: TrainConfig,
    exits: ExitConfig | None = None,
    features: FeatureConfig | None = None,
) -> TrainingSet:
    """Return the purged training and validation rows of ``series`` (one timeframe)."""
    check_series(series)
    return combine([prepare_symbol(s, config, exits, features) for s in series], config)


def check_series(series: Sequence[CandleSeries]) -> None:
    """Raise ``DataError`` unless ``series`` are candles of one timeframe, at least one."""
    if not series:
        raise DataError("training needs candles of at least one symbol")
    timeframes = {s.timeframe for s in series}
    if len(timeframes) != 1:
        raise DataError(f"training needs one timeframe, was given {sorted(timeframes)}")


def prepare_symbol(
    s: CandleSeries,
    config: TrainConfig,
    exits: ExitConfig | None = None,
    features: FeatureConfig | None = None,
) -> SymbolRows:
    """Return one symbol's features, labels and rows, refused if too few or leaking (the
    costly part of ``prepare``: a caller may run one symbol per worker, then ``combine``)."""
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
    return SymbolRows(
        symbol=s.symbol,
        timeframe=s.timeframe,
        dataset=ds,
        candles=(fm, labels) if config.with_segments else None,
    )


def combine(parts: Sequence[SymbolRows], config: TrainConfig) -> TrainingSet:
    """Return the symbols' rows pooled in time order and split: the most recent
    ``validation_fraction`` held out, training labels purged ``embargo`` candles before it."""
    candle_ms = timeframe_to_ms(parts[0].timeframe)
    ds = pool([p.dataset for p in parts])
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
    segments = tuple(
        seg
        for p in parts
        if p.candles is not None
        for seg in split_segments(
            p.symbol,
            p.candles[0].values,
            _labels_of(p.candles[1], config, end=int(ds.end_ms.max())),
            p.candles[1].valid,
            p.candles[1].ts_ms,
            cut_ms=cut,
            purge_ms=config.embargo * candle_ms,
            candle_ms=candle_ms,
        )
    )
    return TrainingSet(
        x_train=ds.X[train],
        y_train=y_train,
        x_valid=ds.X[valid],
        y_valid=y[valid],
        columns=ds.columns,
        set_hash=ds.set_hash,
        label=ds.label,
        symbols=tuple(p.symbol for p in parts),
        train_start_ms=int(ds.start_ms[train].min()),
        valid_start_ms=cut,
        end_ms=int(ds.end_ms.max()) + candle_ms,
        segments=segments,
        valid_ts_ms=ds.start_ms[valid],
        valid_symbol=ds.symbol[valid],
    )


def _labels_of(labels: Labels, config: TrainConfig, *, end: int) -> npt.NDArray[np.int8]:
    """Return the labels the torch members train on: permuted among the resolved rows when
    the config is a control (as the pooled rows' are), else as they are."""
    if config.shuffle_seed is None:
        return labels.y
    y = labels.y.copy()
    rows = np.flatnonzero(labels.valid)
    y[rows] = np.random.default_rng([config.shuffle_seed, end, len(rows)]).permutation(y[rows])
    return y


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


def fit_member(
    name: str,
    data: TrainingSet,
    params: Mapping[str, Any] | None = None,
    warm_files: Mapping[str, bytes] | None = None,
) -> FitResult:
    """Fit member ``name`` on the training rows and score it on the validation rows; a
    forecaster with ``warm_files`` (a previous version's files) starts from its weights."""
    return _fit(name, data, params, warm_files).result


@dataclass(frozen=True, slots=True, kw_only=True)
class _Fitted:
    """A fit's result with its validation P(up) and labels (which rows: ``scored_rows``)."""

    result: FitResult
    p: Probabilities
    y_valid: npt.NDArray[np.int8]


def _fit(
    name: str,
    data: TrainingSet,
    params: Mapping[str, Any] | None,
    warm_files: Mapping[str, bytes] | None,
) -> _Fitted:
    member = make_member(name, params)
    cols, digest = data.columns, data.set_hash
    if isinstance(member, ForecastMember):
        previous = None if warm_files is None else type(member).from_files(warm_files)
        member.fit_segments(
            data.segments, columns=cols, feature_set_hash=digest, warm_start=previous
        )
        y_valid = validation_labels(data.segments)
        y_train = np.concatenate(
            [s.y[: s.train_stop][s.known[: s.train_stop]] for s in data.segments]
        )
    else:
        member.fit(
            data.x_train,
            data.y_train,
            columns=cols,
            feature_set_hash=digest,
            eval_set=(data.x_valid, data.y_valid),
        )
        y_valid, y_train = data.y_valid, data.y_train
    p = validation_predictions(member, data)
    result = FitResult(
        member=name, files=member_files(member), metrics=_scores(name, p, y_valid, y_train)
    )
    return _Fitted(result=result, p=p, y_valid=y_valid)


def validation_predictions(member: Member, data: TrainingSet) -> Probabilities:
    """Return ``member``'s P(up) of the validation rows its kind is scored on: a forecaster's
    of the segments' (``segment_predictions``), another's of ``x_valid`` (``scored_rows``)."""
    cols, digest = data.columns, data.set_hash
    if isinstance(member, ForecastMember):
        return segment_predictions(member, data.segments, cols, digest)
    return member.predict_proba(data.x_valid, columns=cols, feature_set_hash=digest)


def scored_rows(name: str, data: TrainingSet) -> tuple[npt.NDArray[np.str_], IntArray]:
    """Return the symbol and decision-candle open time of each validation row member kind
    ``name`` is scored on, in the order of its predictions."""
    if getattr(MEMBERS[name], "needs_consecutive_rows", False):
        return validation_index(data.segments)
    return data.valid_symbol, data.valid_ts_ms


def segment_predictions(
    member: ForecastMember[Any], segments: Sequence[Segment], columns: Sequence[str], digest: str
) -> npt.NDArray[np.float64]:
    """Return a forecaster's P(up) of every validation row of ``segments`` (in their order),
    each from its full window (the ``window - 1`` rows before it as context)."""
    out = []
    for s in segments:
        if not s.valid_rows:
            continue
        lo = max(0, s.valid_start - (member.window - 1))
        p = member.predict_proba(s.x[lo:], columns=columns, feature_set_hash=digest)
        out.append(p[s.scored[lo:]])
    return np.concatenate(out) if out else np.zeros(0)


@dataclass(frozen=True, slots=True, kw_only=True)
class CandidateFit:
    """A candidate's fit (``fit_member``'s) and, per validation row it was scored on, its
    P(up) beside the serving champion's on the same row: a row-by-row comparison.

    ``champion_p`` is NaN where the row's decision candle is before the champion's training
    end (in sample for it); None when there is nothing to compare with (``note`` says why:
    no champion given, another feature set, unreadable files).
    """

    fit: FitResult
    symbol: npt.NDArray[np.str_]
    ts_ms: IntArray  # the decision candle's open time
    y: npt.NDArray[np.int8]
    p: Probabilities
    champion_p: Probabilities | None
    note: str = ""
    # The holdout backtest of the strategy using the member (bot.holdout_backtest): net
    # return %, trades, max drawdown %, fees; the champion's on the same candles; why one
    # is missing. None: not backtested.
    backtest: Mapping[str, float] | None = None
    champion_backtest: Mapping[str, float] | None = None
    backtest_note: str = ""

    def __post_init__(self) -> None:
        sizes = {len(self.symbol), len(self.ts_ms), len(self.y), len(self.p)}
        if self.champion_p is not None:
            sizes.add(len(self.champion_p))
        if len(sizes) != 1:
            raise ValueError(f"{self.fit.member}: the rows' arrays differ in length: {sizes}")


@dataclass(frozen=True, slots=True)
class ChampionRef:
    """The serving version of a member: its files and the end of its training window."""

    files: dict[str, bytes]
    trained_until_ms: int


@dataclass(frozen=True, slots=True)
class CandidateRun:
    """What a candidate run produced: the rows, each member's fit, and why others failed."""

    data: TrainingSet
    fits: dict[str, CandidateFit]
    failures: dict[str, str]  # member -> one-line reason
    left_out: dict[str, str] = field(default_factory=dict)  # symbol -> why it gave no rows


def fit_candidate(
    name: str,
    data: TrainingSet,
    params: Mapping[str, Any] | None,
    warm_files: Mapping[str, bytes] | None,
    champion_files: Mapping[str, bytes] | None,
    champion_trained_until_ms: int | None,
) -> CandidateFit:
    """Fit member ``name`` as ``fit_member`` does, and have the champion (rebuilt from
    ``champion_files``, trained on candles before ``champion_trained_until_ms``) predict the
    validation rows the candidate was scored on (pooled members: ``x_valid``; forecasters:
    the same segments and windows)."""
    fitted = _fit(name, data, params, warm_files)
    symbol, ts_ms = scored_rows(name, data)
    champion_p, note = _champion_predictions(
        name, data, ts_ms, champion_files, champion_trained_until_ms
    )
    return CandidateFit(
        fit=fitted.result,
        symbol=symbol,
        ts_ms=ts_ms,
        y=fitted.y_valid,
        p=fitted.p,
        champion_p=champion_p,
        note=note,
    )


def _champion_predictions(
    name: str,
    data: TrainingSet,
    ts_ms: IntArray,
    files: Mapping[str, bytes] | None,
    until_ms: int | None,
) -> tuple[Probabilities | None, str]:
    """Return the champion's P(up) of the candidate's rows (NaN: in its sample), or None and
    why there is none."""
    if files is None:
        return None, "no champion given"
    if until_ms is None:
        return None, "the champion's training end was not given: its unseen rows are unknown"
    try:
        champion = MEMBERS[name].from_files(files)
    except Exception as exc:  # noqa: BLE001 - a broken champion must not fail its challenger
        return None, f"the champion's files are unreadable: {type(exc).__name__}: {exc}"
    schema = champion.features
    if schema is None or (schema.columns, schema.feature_set_hash) != (
        data.columns,
        data.set_hash,
    ):
        theirs = "none" if schema is None else _describe(schema.feature_set_hash, schema.columns)
        return None, (
            f"the champion was trained on feature set {theirs}, the candidate on "
            f"{_describe(data.set_hash, data.columns)}: not comparable"
        )
    p = np.array(validation_predictions(champion, data), dtype=np.float64)
    seen = ts_ms < until_ms
    p[seen] = np.nan
    if seen.all():
        return p, "every validation row is in the champion's training window: all NaN"
    if seen.any():
        return p, f"{int(seen.sum())} of {len(p)} rows are in the champion's training window: NaN"
    return p, ""


def _describe(digest: str, columns: Sequence[str]) -> str:
    return f"{digest[:12]} ({len(columns)} columns)"


def _scores(
    name: str, p: npt.NDArray[np.float64], y_valid: npt.NDArray[Any], y_train: npt.NDArray[Any]
) -> dict[str, float]:
    verdict = health(p)
    if not np.isfinite(p).all():
        raise DataError(f"{name}: its validation output is unusable ({verdict.reason}); not saved")
    base = float(y_train.mean())
    metrics = {
        "log_loss": log_loss(p, y_valid),
        # a constant at the training base rate: what a model must beat to know anything
        "log_loss_base": log_loss(np.full(len(p), base), y_valid),
        "accuracy": accuracy(p, y_valid),
        "base_rate": float(y_valid.mean()),
        "rows_train": float(len(y_train)),
        "rows_valid": float(len(y_valid)),
        "p_std": float(p.std()),
        "healthy": 1.0 if verdict.ok else 0.0,
    }
    auc = roc_auc(p, y_valid)
    if auc is not None:
        metrics["auc"] = auc
    return metrics


def member_files(member: Member) -> dict[str, bytes]:
    """Return the files ``member`` saves, as bytes by name (its own formats, never a pickle):
    what a worker process sends back, and what a champion is sent to one as."""
    with tempfile.TemporaryDirectory(prefix="qt-member-") as tmp:
        written = member.save(Path(tmp))
        return {path.name: path.read_bytes() for path in written}
