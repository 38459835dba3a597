"""The versioned feature set and the matrix it produces.

A ``FeatureSet`` names the columns a model was trained on and carries a stable sha256 ``hash``
over its name, version, ordered columns and parameters; the hash is stored with every model,
which refuses a matrix of another set. Change a feature's definition without changing a column
name and the version must be bumped (a test pins the default hash, so it cannot go unnoticed).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from core.domain.market import timeframe_to_ms

FEATURE_SET_NAME = "qt.candles"
FEATURE_SET_VERSION = 1

Dtype = Literal["float32", "float64"]


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureConfig:
    """Which optional blocks the set has: a higher timeframe and a reference series.

    ``higher_timeframe`` (e.g. ``"4h"`` for 1h candles) adds features of the completed
    higher-timeframe candles; ``reference_symbol`` (e.g. ``"BTC/USDT"`` for alts) adds features
    of that series aligned by time. Both are part of the hash: a model trained with them needs
    them.
    """

    higher_timeframe: str | None = None
    reference_symbol: str | None = None
    dtype: Dtype = "float32"

    def __post_init__(self) -> None:
        if self.higher_timeframe is not None:
            timeframe_to_ms(self.higher_timeframe)  # raises ValueError naming it
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, was {self.dtype!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureSet:
    """The identity of a feature set: name, version, ordered columns, parameters, hash."""

    name: str
    version: int
    columns: tuple[str, ...]
    params: dict[str, object] = field(hash=False)
    warmup_candles: int  # rows before the first one with every column defined
    # Candles a live caller should load so the newest row matches the one a model was trained
    # on (computed on all history) within about 1e-4: EMA-type indicators remember their seed.
    history_candles: int

    @property
    def hash(self) -> str:
        """Return the sha256 (hex) over name, version, columns and parameters."""
        payload = json.dumps(
            {
                "name": self.name,
                "version": self.version,
                "columns": list(self.columns),
                "params": self.params,
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureMatrix:
    """Features per candle, aligned with the series they were computed on.

    ``values[i]`` uses only candles ``0..i`` (causal). Warm-up rows are NaN; ``first_valid`` is
    the first row with every column finite (``len`` if none). Later rows can still hold a NaN
    (a flat or zero-volume stretch): use ``valid_rows()`` to pick training rows.
    """

    ts_ms: npt.NDArray[np.int64]
    values: npt.NDArray[np.floating]
    columns: tuple[str, ...]
    set_hash: str
    first_valid: int

    def __post_init__(self) -> None:
        if self.values.shape != (len(self.ts_ms), len(self.columns)):
            raise ValueError(
                f"values shape {self.values.shape} does not match "
                f"{len(self.ts_ms)} rows x {len(self.columns)} columns"
            )

    def __len__(self) -> int:
        return len(self.ts_ms)

    def valid_rows(self) -> npt.NDArray[np.bool_]:
        """Return a mask of the rows where every column is finite."""
        mask: npt.NDArray[np.bool_] = np.isfinite(self.values).all(axis=1)
        return mask

    def column(self, name: str) -> npt.NDArray[np.floating]:
        """Return one column by name (ValueError naming it if absent)."""
        try:
            return self.values[:, self.columns.index(name)]
        except ValueError:
            raise ValueError(f"feature {name!r} is not in this matrix") from None
