"""What the torch forecasters share: windows, training, calibration, the feature guard, files.

A forecaster reads ``X`` as consecutive candles of one series (oldest first; no gaps, one
symbol) and forms each row's window from rows ``<= t`` only (``core.ml.members.windows``);
the one-candle log return is a designated column of ``X`` (``returns_column``, ``ret_1`` of
the feature set) and a few others may join it as channels. It learns the path of cumulative
returns over the next ``horizon`` rows *of the training X*: the labels ``y`` of the training
rows are checked but not used (the forecast is not a classifier). ``eval_set`` is required:
it early-stops the training and is the only data the Platt calibration from forecast to
P(label 1) is fitted on. ``fit(..., warm_start=previous)`` starts from a previous version's
weights (same architecture) for ``warm_epochs`` epochs instead of ``epochs``.

Files: ``weights.pt``, the network's ``state_dict`` (tensors only, read back with
``torch.load(..., weights_only=True)``), and ``member.json`` (columns, hash, hyper-parameters
= the architecture, and the calibration). torch is imported inside the methods only.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, TypeVar

import numpy as np
import numpy.typing as npt

from core.errors import ArtifactError, DataError, InvariantViolation
from core.ml.member import (
    EvalSet,
    FeatureSchema,
    FloatMatrix,
    Probabilities,
    as_features,
    as_labels,
    as_weights,
    read_files,
)
from core.ml.members.calibration import Platt
from core.ml.members.member_file import MEMBER_FILE, MemberFile
from core.ml.members.openmp import prediction_threads
from core.ml.members.windows import Float32, Vector, Windows, make_windows, target_paths
from core.ml.segments import Segment

if TYPE_CHECKING:
    from torch import nn

    from core.ml.members.torch_train import Rows

WEIGHTS_FILE = "weights.pt"
MIN_CALIBRATION_ROWS = 20
# Windows through the network in one call when several symbols' rows are predicted together
# (predict_proba_windows): a close's new rows in one call; whole histories in turn, so a
# start's full compute of every symbol takes no more memory than one symbol's.
BATCH_ROWS = 2_048
# Hyper-parameters of the training, not of the network: a warm start may change them.
TRAINING_FIELDS = frozenset(
    {"epochs", "warm_epochs", "batch_size", "learning_rate", "weight_decay", "patience"}
    | {"seed", "n_threads"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ForecastParams:
    """The inputs, target and training of a forecaster (its network adds its own sizes)."""

    window: int = 168  # L candles: one week of 1h
    horizon: int = 24  # H: the label's horizon
    returns_column: str = "ret_1"
    feature_columns: tuple[str, ...] = ("range", "vol_ratio_20")
    epochs: int = 20  # N-HiTS: 3-4 s each on 2 years of 1h, so ~80 s if none stops early
    warm_epochs: int = 8
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 4
    seed: int = 0
    n_threads: int = 2  # explicit: torch would take every core the machine has

    def __post_init__(self) -> None:
        for f in fields(self):  # JSON gives lists where the dataclass holds tuples
            if isinstance(getattr(self, f.name), list):
                object.__setattr__(self, f.name, tuple(getattr(self, f.name)))
        if self.window < 2 or self.horizon < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("need window >= 2, horizon >= 1, epochs >= 1, batch_size >= 1")

    @property
    def channels(self) -> tuple[str, ...]:
        """Return the input columns, the returns first."""
        return (self.returns_column, *self.feature_columns)

    def architecture(self) -> dict[str, Any]:
        """Return what fixes the network's shapes (a warm start must match it)."""
        return {k: v for k, v in asdict(self).items() if k not in TRAINING_FIELDS}


P = TypeVar("P", bound=ForecastParams)


class ForecastMember(ABC, Generic[P]):
    """A torch forecaster behind the ``Member`` protocol; see the module docstring."""

    name: ClassVar[str]
    # Rows must be one symbol's consecutive candles (windows are formed from them): a trainer
    # that pools symbols' rows in time order must not fit these.
    needs_consecutive_rows: ClassVar[bool] = True
    model_file: ClassVar[str] = WEIGHTS_FILE
    files: ClassVar[tuple[str, ...]] = (WEIGHTS_FILE, MEMBER_FILE)
    params_type: ClassVar[type[Any]]

    def __init__(self, params: P | None = None) -> None:
        self._params: P = self.params_type() if params is None else params
        self._net: Any = None  # the torch module, once fitted or loaded
        self._features: FeatureSchema | None = None
        self._calibration: Platt | None = None
        self._fit_info: dict[str, Any] = {}

    @abstractmethod
    def _build(self) -> nn.Module:
        """Return a new network of this member's architecture (imports torch)."""

    # --- the Member protocol -------------------------------------------------------------------

    @property
    def features(self) -> FeatureSchema | None:
        """Return the columns and hash it was trained on (None before fit)."""
        return self._features

    @property
    def params(self) -> Mapping[str, Any]:
        """Return the hyper-parameters, JSON-able."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self._params).items()}

    @property
    def fit_info(self) -> Mapping[str, Any]:
        """Return what fitting found (epochs, best validation loss, the calibration)."""
        return dict(self._fit_info)

    @property
    def calibration(self) -> Platt | None:
        """Return the forecast-to-probability calibration (None before fit)."""
        return self._calibration

    @property
    def window(self) -> int:
        """Return L: pass ``window - 1`` rows of context before the first row that matters."""
        return self._params.window

    @property
    def weight_count(self) -> int:
        """Return how many weights the network has (0 before fit)."""
        return 0 if self._net is None else sum(int(p.numel()) for p in self._net.parameters())

    def library_versions(self) -> dict[str, str]:
        """Return the versions of the libraries the model was made with."""
        import torch

        return {"torch": torch.__version__, "numpy": np.__version__}

    def fit(
        self,
        x: npt.ArrayLike,
        y: npt.ArrayLike,
        *,
        columns: Sequence[str],
        feature_set_hash: str,
        sample_weight: npt.ArrayLike | None = None,
        eval_set: EvalSet | None = None,
        warm_start: ForecastMember[P] | None = None,
    ) -> None:
        """Train the forecast on ``x`` and calibrate it on ``eval_set`` (required: a later
        window of consecutive candles); ``warm_start`` continues a previous version."""
        xs = as_features(self.name, x, columns)
        ys = as_labels(self.name, y, xs.shape[0])  # the protocol's checks; the forecast ignores y
        ws = as_weights(self.name, sample_weight, xs.shape[0])
        if eval_set is None:
            raise DataError(
                f"{self.name}: fit needs an eval_set: its forecast is turned into P(up) by a "
                "calibration fitted on validation rows only"
            )
        xv = as_features(self.name, eval_set[0], columns)
        yv = as_labels(self.name, eval_set[1], xv.shape[0], both_classes=False)
        n, m = xs.shape[0], xv.shape[0]
        train = Segment(
            symbol="train", x=xs, y=ys.astype(np.int8), known=np.ones(n, bool), train_stop=n,
            valid_start=n,
        )  # fmt: skip
        valid = Segment(
            symbol="eval", x=xv, y=yv.astype(np.int8), known=np.ones(m, bool), train_stop=0,
            valid_start=0,
        )  # fmt: skip
        self._fit(
            [train, valid],
            columns,
            feature_set_hash,
            weights=[ws, None],
            warm_start=warm_start,
            rows_note=f"{n} rows given, more than {self.window - 1 + self._params.horizon} needed",
            calibration_note=f"{m} eval rows, less the first {self.window - 1} (context)",
        )

    def fit_segments(
        self,
        segments: Sequence[Segment],
        *,
        columns: Sequence[str],
        feature_set_hash: str,
        warm_start: ForecastMember[P] | None = None,
    ) -> None:
        """Train on the training parts of several runs of consecutive candles (several
        symbols: no window crosses from one run into another) and calibrate on their
        validation parts; the rows between are context for the validation windows."""
        checked = []
        for s in segments:
            xs = as_features(self.name, s.x, columns)
            as_labels(self.name, s.y, xs.shape[0], both_classes=False)
            checked.append(replace(s, x=xs))
        self._fit(
            checked,
            columns,
            feature_set_hash,
            weights=[None] * len(checked),
            warm_start=warm_start,
            rows_note=f"{sum(s.train_stop for s in checked)} training rows in "
            f"{len(checked)} run(s) of consecutive candles",
            calibration_note=f"{sum(s.valid_rows for s in checked)} validation rows",
        )

    def _fit(
        self,
        segments: Sequence[Segment],
        columns: Sequence[str],
        feature_set_hash: str,
        *,
        weights: Sequence[Vector | None],
        warm_start: ForecastMember[P] | None,
        rows_note: str,
        calibration_note: str,
    ) -> None:
        from core.ml.members.torch_train import LoopConfig, Rows, fit_net, seeded

        channels = self._channel_indices(columns)
        parts = [
            self._rows(s.x[: s.train_stop], channels, None if w is None else w[: s.train_stop])
            for s, w in zip(segments, weights, strict=True)
            if s.train_stop
        ]
        train = Rows.concat(parts or [Rows.empty(len(channels), self.window, self._params.horizon)])
        valid = Rows.concat(
            [self._rows(s.x, channels, None, first=s.valid_start) for s in segments if s.valid_rows]
            or [Rows.empty(len(channels), self.window, self._params.horizon)]
        )
        if not len(train):
            raise DataError(
                f"{self.name}: no training row has a full window and a known target: {rows_note}"
            )
        calibrated = [
            np.flatnonzero(s.scored & (np.arange(len(s.y)) >= self.window - 1)) for s in segments
        ]
        if sum(len(rows) for rows in calibrated) < MIN_CALIBRATION_ROWS:
            raise DataError(
                f"{self.name}: {sum(len(r) for r in calibrated)} validation rows have a full "
                f"window ({calibration_note}), at least {MIN_CALIBRATION_ROWS} needed to "
                "calibrate"
            )
        start = self._warm_state(warm_start)
        p = self._params
        loop = LoopConfig(
            epochs=p.warm_epochs if start is not None else p.epochs,
            batch_size=p.batch_size,
            learning_rate=p.learning_rate,
            weight_decay=p.weight_decay,
            patience=p.patience,
            seed=p.seed,
        )
        with seeded(p.seed, p.n_threads):
            net = self._build()
            if start is not None:
                net.load_state_dict(start)
            info = fit_net(net, train, valid, loop)
        # Calibrated on the validation rows with a full window; set together, after
        # everything succeeded, so a failed refit leaves the member as it was.
        forecasts, labels = [], []
        for s, rows in zip(segments, calibrated, strict=True):
            if len(rows):  # from the window's context on: the training rows are not needed
                lo = int(rows[0]) - (self.window - 1)
                forecasts.append(self._forecast_rows(net, s.x[lo:], channels)[rows - lo])
                labels.append(s.y[rows].astype(np.float64))
        forecast = np.concatenate(forecasts)
        calibration = Platt.fit(forecast, np.concatenate(labels))
        self._net, self._calibration = net, calibration
        self._features = FeatureSchema(tuple(columns), feature_set_hash)
        self._fit_info = {
            **info,
            "warm_start": start is not None,
            "calibration": calibration.to_json(),
        }

    def forecast(
        self, x: npt.ArrayLike, *, columns: Sequence[str], feature_set_hash: str
    ) -> Vector:
        """Return each row's forecast of the cumulative log return over the next ``horizon``
        candles; raise ``FeatureMismatch`` on other features."""
        xs = self._checked(x, columns, feature_set_hash)
        return self._forecast_rows(self._net, xs, self._channel_indices(columns))

    def predict_proba(
        self, x: npt.ArrayLike, *, columns: Sequence[str], feature_set_hash: str
    ) -> Probabilities:
        """Return P(class 1) per row (the calibrated forecast); raise ``FeatureMismatch`` on
        other features. Row ``t`` uses rows ``<= t`` only."""
        forecast = self.forecast(x, columns=columns, feature_set_hash=feature_set_hash)
        assert self._calibration is not None  # noqa: S101 - set with the network
        return self._calibration.probability(forecast)

    def predict_newest(
        self, x: npt.ArrayLike, *, columns: Sequence[str], feature_set_hash: str
    ) -> float:
        """Return P(class 1) of the last row only: what a live decision needs, one window
        through the network instead of one per row (equal to ``predict_proba(x)[-1]`` up to
        float32 rounding)."""
        xs = self._checked(x, columns, feature_set_hash)[-self.window :]
        forecast = self._forecast_rows(
            self._net, xs, self._channel_indices(columns), first=len(xs) - 1
        )
        assert self._calibration is not None  # noqa: S101 - set with the network
        return float(self._calibration.probability(forecast)[0])

    def predict_proba_from(
        self, x: npt.ArrayLike, first: int, *, columns: Sequence[str], feature_set_hash: str
    ) -> Probabilities:
        """Return P(class 1) of rows ``first..`` of ``x`` only, the rows before being their
        windows' context (equal to ``predict_proba(x)[first:]`` up to float32 rounding)."""
        xs = self._checked(x, columns, feature_set_hash)
        forecast = self._forecast_rows(self._net, xs, self._channel_indices(columns), first=first)
        assert self._calibration is not None  # noqa: S101 - set with the network
        return self._calibration.probability(forecast)

    def predict_proba_windows(
        self,
        blocks: Sequence[tuple[npt.ArrayLike, int]],
        *,
        columns: Sequence[str],
        feature_set_hash: str,
    ) -> list[Probabilities]:
        """Return ``predict_proba_from(x, first)`` of each block ``(x, first)`` (several
        symbols' rows), their windows through the network together: one call for many small
        blocks (a new row each) instead of one per block, at most ``BATCH_ROWS`` windows a
        call, so whole histories (a start, a roll-over) cost the memory they cost one by one
        (equal up to float32 rounding)."""
        channels = self._channel_indices(columns)
        out: list[Probabilities] = []
        made: list[Windows] = []
        for x, first in blocks:
            windows = make_windows(
                self._checked(x, columns, feature_set_hash), channels, self.window, first
            )
            if made and sum(len(w.scale) for w in made) + len(windows.scale) > BATCH_ROWS:
                out += self._probabilities(made)
                made = []
            made.append(windows)
        return out + self._probabilities(made) if made else out

    def _probabilities(self, made: Sequence[Windows]) -> list[Probabilities]:
        """Return the calibrated P(class 1) of each set of windows, in one network call."""
        forecast = self._forecast_windows(
            self._net,
            np.concatenate([w.inputs for w in made]),
            np.concatenate([w.scale for w in made]),
        )
        assert self._calibration is not None  # noqa: S101 - set with the network
        p = self._calibration.probability(forecast)
        return list(np.split(p, np.cumsum([len(w.scale) for w in made])[:-1]))

    def save(self, folder: Path) -> list[Path]:
        """Write ``weights.pt`` and ``member.json`` into ``folder`` (existing)."""
        if self._net is None or self._features is None or self._calibration is None:
            raise InvariantViolation(f"{self.name} was asked to save before it was fitted")
        import torch

        buffer = io.BytesIO()
        # A plain dict of tensors: nothing else to unpickle, so weights_only can read it.
        torch.save({k: v.contiguous() for k, v in self._net.state_dict().items()}, buffer)
        fit = {**self._fit_info, "calibration": self._calibration.to_json()}
        doc = MemberFile(self.name, self._features, dict(self.params), self.library_versions(), fit)
        written = []
        for name, raw in ((WEIGHTS_FILE, buffer.getvalue()), (MEMBER_FILE, doc.to_bytes())):
            path = folder / name
            path.write_bytes(raw)
            written.append(path)
        return written

    @classmethod
    def from_files(cls, files: Mapping[str, bytes]) -> Self:
        """Return the member stored in these file contents (by file name)."""
        missing = [name for name in cls.files if name not in files]
        if missing:
            raise ArtifactError(f"{cls.name}: model files missing: {', '.join(missing)}")
        doc = MemberFile.parse(files[MEMBER_FILE], cls.name)
        try:
            params = cls.params_type(**doc.params)
        except (TypeError, ValueError) as exc:
            raise ArtifactError(f"{MEMBER_FILE} of {cls.name}: bad params: {exc}") from exc
        member = cls(params)
        member._calibration = Platt.from_json(doc.fit.get("calibration"), MEMBER_FILE)
        import torch

        try:
            state = torch.load(io.BytesIO(files[WEIGHTS_FILE]), weights_only=True)
            net = member._build()
            net.load_state_dict(state, strict=True)
        except Exception as exc:
            raise ArtifactError(f"{WEIGHTS_FILE} of {cls.name} cannot be read: {exc}") from exc
        member._net = net
        member._features = doc.features
        member._fit_info = doc.fit
        return member

    @classmethod
    def load(cls, folder: Path) -> Self:
        """Return the member saved in ``folder`` (unverified: see ``core.ml.artifacts``)."""
        return cls.from_files(read_files(folder, cls.files))

    # --- inside ------------------------------------------------------------------------------

    def _channel_indices(self, columns: Sequence[str]) -> list[int]:
        names = list(columns)
        missing = [c for c in self._params.channels if c not in names]
        if missing:
            raise DataError(f"{self.name}: X has no column {', '.join(missing)} (its inputs)")
        return [names.index(c) for c in self._params.channels]

    def _rows(
        self, x: FloatMatrix, channels: list[int], w: Vector | None, *, first: int = 0
    ) -> Rows:
        """Return the rows from ``first`` on with a full window and a known target."""
        from core.ml.members.torch_train import Rows

        # the rows before ``first`` are context only: not windowed (a validation part would
        # otherwise window its segment's training rows again)
        windows = make_windows(x, channels, self.window, first)
        paths, known = target_paths(x[first:, channels[0]], windows.scale, self._params.horizon)
        keep = np.flatnonzero(windows.full & known)
        weights = (np.ones(len(x)) if w is None else w)[first:]
        return Rows(windows.inputs[keep], paths[keep], weights[keep])

    def _forecast_rows(
        self, net: nn.Module, x: FloatMatrix, channels: list[int], *, first: int = 0
    ) -> Vector:
        # the rows before ``first`` are context only: neither windowed nor through the network
        windows = make_windows(x, channels, self.window, first)
        return self._forecast_windows(net, windows.inputs, windows.scale)

    def _forecast_windows(self, net: nn.Module, inputs: Float32, scale: Vector) -> Vector:
        """Return the forecasts of normalised windows ``inputs`` in units of ``scale``."""
        from core.ml.members.torch_train import predict_paths, set_threads

        set_threads(prediction_threads(len(inputs), self._params.n_threads))
        paths = predict_paths(net, inputs)
        forecast: Vector = paths[:, -1].astype(np.float64) * scale
        return forecast

    def _warm_state(self, previous: ForecastMember[P] | None) -> dict[str, Any] | None:
        if previous is None:
            return None
        if type(previous) is not type(self) or previous._net is None:
            raise DataError(f"{self.name}: warm_start needs a fitted {self.name} member")
        if previous._params.architecture() != self._params.architecture():
            raise DataError(
                f"{self.name}: warm_start from another architecture: "
                f"{previous._params.architecture()} vs {self._params.architecture()}"
            )
        state: dict[str, Any] = previous._net.state_dict()
        return {k: v.detach().clone() for k, v in state.items()}

    def _checked(self, x: npt.ArrayLike, columns: Sequence[str], digest: str) -> FloatMatrix:
        if self._net is None or self._features is None:
            raise InvariantViolation(f"{self.name} was asked to predict before it was fitted")
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim == 2:  # the guard's message is clearer than the shape check's
            self._features.check(self.name, arr, columns, digest)
        return as_features(self.name, arr, columns)
