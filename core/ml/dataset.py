"""Features and labels joined into training rows: the plain arrays a member fits on.

Joining is where the old system went wrong unnoticed (its LightGBM got 5 of its 49 features),
so ``build_dataset`` refuses features and labels of different candles, keeps only rows where
every feature is defined and the label is known, and carries the set hash and the label's
spans along for the split. ``pool`` puts several symbols' rows in one time order, for a model
trained across symbols (split with ``candle_ms``: their spans are open times).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.ml.feature_set import FeatureMatrix
from core.ml.labels import Labels

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True, kw_only=True)
class Dataset:
    """Training rows: ``X`` (rows x ``columns``), ``y``, and each label's span.

    ``start_ms``/``end_ms`` are the open times of the decision candle and of the candle the
    label resolved at; ``row`` is the decision candle's row in its own series.
    """

    X: npt.NDArray[np.floating]
    y: npt.NDArray[np.int8]
    start_ms: IntArray
    end_ms: IntArray
    row: IntArray
    symbol: npt.NDArray[np.str_]
    columns: tuple[str, ...]
    set_hash: str
    label: str

    def __len__(self) -> int:
        return len(self.y)


def build_dataset(features: FeatureMatrix, labels: Labels, symbol: str) -> Dataset:
    """Return the rows where every feature is finite and the label is valid."""
    if not np.array_equal(features.ts_ms, labels.ts_ms):
        raise ValueError(
            f"features ({len(features)} rows) and labels ({len(labels)} rows) are not of the "
            "same candles: compute both from one series"
        )
    keep = np.flatnonzero(features.valid_rows() & labels.valid)
    return Dataset(
        X=features.values[keep],
        y=labels.y[keep],
        start_ms=labels.ts_ms[keep],
        end_ms=labels.end_ts_ms[keep],
        row=keep.astype(np.int64),
        symbol=np.full(len(keep), symbol),
        columns=features.columns,
        set_hash=features.set_hash,
        label=labels.name,
    )


def pool(parts: Sequence[Dataset]) -> Dataset:
    """Return several symbols' datasets as one, in time order (stable: ties keep part order)."""
    if not parts:
        raise ValueError("pool needs at least one dataset")
    first = parts[0]
    for part in parts[1:]:
        if (part.set_hash, part.columns, part.label) != (
            first.set_hash,
            first.columns,
            first.label,
        ):
            raise ValueError(
                f"cannot pool feature set {part.set_hash[:12]} / label {part.label} with "
                f"{first.set_hash[:12]} / {first.label}"
            )
    order = np.argsort(np.concatenate([p.start_ms for p in parts]), kind="stable")
    return Dataset(
        X=np.concatenate([p.X for p in parts])[order],
        y=np.concatenate([p.y for p in parts])[order],
        start_ms=np.concatenate([p.start_ms for p in parts])[order],
        end_ms=np.concatenate([p.end_ms for p in parts])[order],
        row=np.concatenate([p.row for p in parts])[order],
        symbol=np.concatenate([p.symbol for p in parts])[order],
        columns=first.columns,
        set_hash=first.set_hash,
        label=first.label,
    )
