"""What the gradient-boosted tree members share: input checks, the feature guard, their files.

A subclass says how to train, predict, explain and (de)serialise its library's booster; the
library is imported inside those methods only, so importing a member costs nothing at start.
No scaler: trees split on order, so scaling a feature changes no prediction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, TypeVar

import numpy as np
import numpy.typing as npt

from core.errors import ArtifactError, InvariantViolation
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
from core.ml.members.member_file import MEMBER_FILE, MemberFile

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

P = TypeVar("P", bound="DataclassInstance")
Vector = npt.NDArray[np.float64]


class GbdtMember(ABC, Generic[P]):
    """A binary GBDT classifier behind the ``Member`` and ``Explainer`` protocols."""

    name: ClassVar[str]
    model_file: ClassVar[str]
    files: ClassVar[tuple[str, ...]]
    params_type: ClassVar[type[Any]]

    def __init__(self, params: P | None = None) -> None:
        self._params: P = self.params_type() if params is None else params
        self._model: Any = None  # the library's booster, once fitted or loaded
        self._features: FeatureSchema | None = None
        self._fit_info: dict[str, Any] = {}

    # --- the library's side --------------------------------------------------------------------

    @abstractmethod
    def _train(
        self, x: FloatMatrix, y: Vector, w: Vector | None, valid: tuple[FloatMatrix, Vector] | None
    ) -> tuple[Any, dict[str, Any]]:
        """Return a fitted booster and what fitting found (trees kept, best score)."""

    @abstractmethod
    def _predict(self, x: FloatMatrix) -> Vector:
        """Return P(class 1) of each row."""

    @abstractmethod
    def _contributions(self, x: FloatMatrix) -> FloatMatrix:
        """Return per-feature log-odds contributions plus the bias, per row."""

    @abstractmethod
    def _model_bytes(self) -> bytes:
        """Return the booster in the library's own safe format."""

    @abstractmethod
    def _model_from_bytes(self, raw: bytes) -> Any:
        """Return the booster stored in ``raw``."""

    @abstractmethod
    def _model_feature_count(self) -> int:
        """Return how many features the loaded booster takes."""

    @abstractmethod
    def library_versions(self) -> dict[str, str]:
        """Return the versions of the libraries the model was made with."""

    # --- the Member protocol -------------------------------------------------------------------

    @property
    def features(self) -> FeatureSchema | None:
        """Return the columns and hash it was trained on (None before fit)."""
        return self._features

    @property
    def params(self) -> Mapping[str, Any]:
        """Return the hyper-parameters, JSON-able."""
        return asdict(self._params)

    @property
    def fit_info(self) -> Mapping[str, Any]:
        """Return what fitting found (e.g. how many trees early stopping kept)."""
        return dict(self._fit_info)

    def fit(
        self,
        x: npt.ArrayLike,
        y: npt.ArrayLike,
        *,
        columns: Sequence[str],
        feature_set_hash: str,
        sample_weight: npt.ArrayLike | None = None,
        eval_set: EvalSet | None = None,
    ) -> None:
        """Train on ``x``/``y``; ``eval_set`` (a later window) drives early stopping."""
        xs = as_features(self.name, x, columns)
        ys = as_labels(self.name, y, xs.shape[0])
        ws = as_weights(self.name, sample_weight, xs.shape[0])
        valid = None
        if eval_set is not None:
            xv = as_features(self.name, eval_set[0], columns)
            # A short validation window may hold one class only; its log-loss still counts.
            valid = (xv, as_labels(self.name, eval_set[1], xv.shape[0], both_classes=False))
        self._model, self._fit_info = self._train(xs, ys, ws, valid)
        self._features = FeatureSchema(tuple(columns), feature_set_hash)

    def predict_proba(
        self, x: npt.ArrayLike, *, columns: Sequence[str], feature_set_hash: str
    ) -> Probabilities:
        """Return P(class 1) per row; raise ``FeatureMismatch`` on other features."""
        return self._predict(self._checked(x, columns, feature_set_hash))

    def contributions(
        self, x: npt.ArrayLike, *, columns: Sequence[str], feature_set_hash: str
    ) -> FloatMatrix:
        """Return per-row contributions, shape (rows, len(columns) + 1): one per column in
        log-odds, the last column the bias; a row sums to its log-odds prediction."""
        return self._contributions(self._checked(x, columns, feature_set_hash))

    def top_contributions(
        self, x_row: npt.ArrayLike, *, columns: Sequence[str], feature_set_hash: str, k: int
    ) -> list[tuple[str, float]]:
        """Return the ``k`` features that pushed one row's prediction most (largest |value|
        first), as (column, log-odds contribution); the bias is left out."""
        row = np.asarray(x_row, dtype=np.float64).reshape(1, -1)
        pushes = self.contributions(row, columns=columns, feature_set_hash=feature_set_hash)[0]
        order = np.argsort(-np.abs(pushes[:-1]), kind="stable")[:k]
        return [(columns[j], float(pushes[j])) for j in order if pushes[j] != 0.0]

    def _checked(self, x: npt.ArrayLike, columns: Sequence[str], digest: str) -> FloatMatrix:
        if self._model is None or self._features is None:
            raise InvariantViolation(f"{self.name} was asked to predict before it was fitted")
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim == 2:  # the guard's message is clearer than the shape check's
            self._features.check(self.name, arr, columns, digest)
        return as_features(self.name, arr, columns)

    def save(self, folder: Path) -> list[Path]:
        """Write the model and ``member.json`` into ``folder`` (existing); return their paths."""
        if self._model is None or self._features is None:
            raise InvariantViolation(f"{self.name} was asked to save before it was fitted")
        doc = MemberFile(
            self.name, self._features, dict(self.params), self.library_versions(), self._fit_info
        )
        written = []
        for name, raw in ((self.model_file, self._model_bytes()), (MEMBER_FILE, doc.to_bytes())):
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
        except TypeError as exc:
            raise ArtifactError(f"{MEMBER_FILE} of {cls.name}: bad params: {exc}") from exc
        member = cls(params)
        try:
            member._model = member._model_from_bytes(files[cls.model_file])
            width = member._model_feature_count()
        except Exception as exc:
            raise ArtifactError(f"{cls.model_file} of {cls.name} cannot be read: {exc}") from exc
        if width != len(doc.features.columns):
            raise ArtifactError(
                f"{cls.model_file} of {cls.name} takes {width} features, "
                f"{MEMBER_FILE} lists {len(doc.features.columns)}"
            )
        member._features = doc.features
        member._fit_info = doc.fit
        return member

    @classmethod
    def load(cls, folder: Path) -> Self:
        """Return the member saved in ``folder`` (unverified: see ``core.ml.artifacts``)."""
        return cls.from_files(read_files(folder, cls.files))
