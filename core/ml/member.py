"""The one interface of an ensemble member, and the feature guard every member applies.

A member takes plain inputs: ``X`` (2-D float, one row per candle), its column names, the hash
of the feature set that produced them, and labels ``y`` of 0/1. It remembers the columns and the
hash it was trained on and refuses anything else at prediction time: the system we replace fed
its LightGBM 5 of the 49 features it was trained on, and nobody noticed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self

import numpy as np
import numpy.typing as npt

from core.errors import ArtifactError, DataError, FeatureMismatch

FloatMatrix = npt.NDArray[np.float64]
Probabilities = npt.NDArray[np.float64]  # 1-D, P(class 1) per row
Labels = npt.NDArray[np.integer[Any]]
EvalSet = tuple[npt.ArrayLike, npt.ArrayLike]  # (X, y) of a validation window


@dataclass(frozen=True, slots=True)
class FeatureSchema:
    """The columns (in order) and feature-set hash a member was trained on."""

    columns: tuple[str, ...]
    feature_set_hash: str

    def check(
        self, member: str, x: FloatMatrix, columns: Sequence[str], feature_set_hash: str
    ) -> None:
        """Raise ``FeatureMismatch`` unless ``x`` has exactly these columns of this set."""
        given = tuple(columns)
        problems = []
        if feature_set_hash != self.feature_set_hash:
            problems.append(
                f"feature set {feature_set_hash!r} was given, it was trained on "
                f"{self.feature_set_hash!r}"
            )
        if given != self.columns:
            problems.append(_column_difference(self.columns, given))
        if x.shape[1] != len(self.columns) and not problems:
            problems.append(f"X has {x.shape[1]} columns, {len(self.columns)} expected")
        if problems:
            raise FeatureMismatch(f"{member} refuses these features: " + "; ".join(problems))


def _column_difference(expected: tuple[str, ...], given: tuple[str, ...]) -> str:
    missing = [c for c in expected if c not in set(given)]
    extra = [c for c in given if c not in set(expected)]
    parts = [f"{len(given)} columns given, {len(expected)} expected"]
    if missing:
        parts.append(f"missing: {', '.join(missing[:10])}{_more(missing)}")
    if extra:
        parts.append(f"extra: {', '.join(extra[:10])}{_more(extra)}")
    if not missing and not extra:
        parts.append("same columns in another order or repeated")
    return ", ".join(parts)


def _more(names: list[str]) -> str:
    return f" (+{len(names) - 10} more)" if len(names) > 10 else ""


def as_features(member: str, x: npt.ArrayLike, columns: Sequence[str]) -> FloatMatrix:
    """Return ``x`` as a C-ordered float64 matrix, refusing a wrong shape or infinities.

    NaN stays: it is a missing value (an indicator still warming up) that trees route natively.
    """
    arr = np.ascontiguousarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise DataError(f"{member}: X must be a non-empty 2-D array, was shape {arr.shape}")
    if arr.shape[1] != len(columns):
        raise DataError(f"{member}: X has {arr.shape[1]} columns but {len(columns)} names")
    if len(set(columns)) != len(columns):
        raise DataError(f"{member}: column names repeat: {sorted(columns)}")
    bad = np.flatnonzero(np.isinf(arr).any(axis=0))
    if bad.size:
        names = [columns[int(i)] for i in bad]
        raise DataError(f"{member}: features hold infinities in {', '.join(names)}")
    return arr


def as_labels(
    member: str, y: npt.ArrayLike, rows: int, *, both_classes: bool = True
) -> npt.NDArray[np.float64]:
    """Return 0/1 labels as float64 (what both libraries take), refusing anything else (and,
    if ``both_classes``, labels of one class only: a training set teaches nothing then)."""
    arr = np.asarray(y)
    if arr.shape != (rows,):
        raise DataError(f"{member}: y must be 1-D with {rows} labels, was shape {arr.shape}")
    if not np.isin(arr, (0, 1)).all():
        raise DataError(f"{member}: labels must be 0 or 1, found {np.unique(arr)[:5]}")
    if both_classes and arr.min() == arr.max():
        raise DataError(f"{member}: all {rows} labels are {int(arr[0])}; nothing to learn")
    return arr.astype(np.float64)


def as_weights(member: str, w: npt.ArrayLike | None, rows: int) -> npt.NDArray[np.float64] | None:
    """Return sample weights as float64 (None stays None), refusing negative or non-finite."""
    if w is None:
        return None
    arr = np.asarray(w, dtype=np.float64)
    if arr.shape != (rows,) or not np.isfinite(arr).all() or (arr < 0).any():
        raise DataError(f"{member}: sample_weight must be {rows} finite values >= 0")
    return arr


def read_files(folder: Path, names: Sequence[str]) -> dict[str, bytes]:
    """Return the bytes of each named file in ``folder``; a missing one is an ArtifactError."""
    files = {}
    for name in names:
        path = folder / name
        try:
            files[name] = path.read_bytes()
        except OSError as exc:
            raise ArtifactError(f"cannot read model file {path}: {exc.strerror}") from exc
    return files


class Member(Protocol):
    """An ensemble member: a binary classifier of plain feature matrices.

    ``save`` writes the member's own files (model and feature list, never a pickle);
    ``from_files`` rebuilds it from those files' bytes, so that a caller can verify the bytes
    (``core.ml.artifacts``) and parse exactly what it verified. ``load`` reads a folder
    without any integrity check.
    """

    name: ClassVar[str]
    files: ClassVar[tuple[str, ...]]  # what save() writes, relative to its folder

    @property
    def features(self) -> FeatureSchema | None:
        """Return the columns and hash it was trained on (None before fit)."""
        ...

    @property
    def params(self) -> Mapping[str, Any]:
        """Return the hyper-parameters, JSON-able."""
        ...

    def library_versions(self) -> dict[str, str]:
        """Return the versions of the libraries the model was made with."""
        ...

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
        ...

    def predict_proba(
        self, x: npt.ArrayLike, *, columns: Sequence[str], feature_set_hash: str
    ) -> Probabilities:
        """Return P(class 1) per row; raise ``FeatureMismatch`` on other features."""
        ...

    def save(self, folder: Path) -> list[Path]:
        """Write the member's files into ``folder`` (existing) and return their paths."""
        ...

    @classmethod
    def from_files(cls, files: Mapping[str, bytes]) -> Self:
        """Return the member stored in these file contents (by file name)."""
        ...

    @classmethod
    def load(cls, folder: Path) -> Self:
        """Return the member saved in ``folder`` (unverified: see ``core.ml.artifacts``)."""
        ...


class Explainer(Protocol):
    """A member that can say how much each feature pushed one prediction."""

    def contributions(
        self, x: npt.ArrayLike, *, columns: Sequence[str], feature_set_hash: str
    ) -> FloatMatrix:
        """Return per-row contributions, shape (rows, len(columns) + 1): one per column in
        log-odds, the last column the bias; a row sums to its log-odds prediction."""
        ...

    def top_contributions(
        self, x_row: npt.ArrayLike, *, columns: Sequence[str], feature_set_hash: str, k: int
    ) -> list[tuple[str, float]]:
        """Return the ``k`` features that pushed one row's prediction most, largest first."""
        ...
