"""Consecutive rows of one series, split in time: what the torch forecasters train on.

The pooled training rows of ``core.ml.training`` mix symbols in one time order, which a
member reading each row on its own does not mind; a forecaster forms each row's window from
the rows before it, so it needs one symbol's consecutive candles. A ``Segment`` is such a run
of candles whose features are all defined (the warm-up is left out; a feature undefined
mid-series, or a candle missing from the file, starts a new run) with the same purged split
as the pooled rows: its training part is the prefix whose forecast targets ended
``embargo`` candles before the holdout began, its validation part the suffix from the
holdout on, scored where the label is known; the rows between them (the purge) are only
context for the validation windows. Each row carries its decision candle's open time, so a
validation row can be named (``validation_index``) and scored by another model on the same rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatMatrix = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _no_times() -> IntArray:
    return np.zeros(0, dtype=np.int64)


@dataclass(frozen=True, slots=True, kw_only=True)
class Segment:
    """Consecutive rows ``x``/``y`` of one symbol: ``[0, train_stop)`` are trained on,
    ``[valid_start, len)`` are validation rows, scored where ``known`` (the label resolved;
    ``y`` is 0 elsewhere); rows before ``valid_start`` are their context. ``ts_ms`` is each
    row's decision-candle open time (empty: rows given without their times)."""

    symbol: str
    x: FloatMatrix
    y: npt.NDArray[np.int8]
    known: npt.NDArray[np.bool_]
    train_stop: int
    valid_start: int
    ts_ms: IntArray = field(default_factory=_no_times)

    def __post_init__(self) -> None:
        rows = len(self.y)
        if not 0 <= self.train_stop <= self.valid_start <= rows == len(self.x) == len(self.known):
            raise ValueError(
                f"segment of {self.symbol}: need 0 <= train_stop ({self.train_stop}) <= "
                f"valid_start ({self.valid_start}) <= rows ({rows}) and a known flag per row"
            )
        if len(self.ts_ms) not in (0, rows):
            raise ValueError(
                f"segment of {self.symbol}: {len(self.ts_ms)} open times for {rows} rows"
            )

    @property
    def scored(self) -> npt.NDArray[np.bool_]:
        """Return a mask of the validation rows with a known label."""
        mask = self.known.copy()
        mask[: self.valid_start] = False
        return mask

    @property
    def valid_rows(self) -> int:
        """Return how many validation rows have a known label."""
        return int(self.scored.sum())


def consecutive_runs(row: npt.NDArray[np.int64]) -> list[tuple[int, int]]:
    """Return ``(start, stop)`` of each run of consecutive integers in ``row`` (sorted)."""
    if not len(row):
        return []
    breaks = np.flatnonzero(np.diff(row) != 1) + 1
    bounds = [0, *breaks.tolist(), len(row)]
    return list(itertools.pairwise(bounds))


def split_segments(
    symbol: str,
    x: npt.NDArray[np.floating],
    y: npt.NDArray[np.int8],
    known: npt.NDArray[np.bool_],
    start_ms: npt.NDArray[np.int64],
    *,
    cut_ms: int,
    purge_ms: int,
    candle_ms: int,
) -> list[Segment]:
    """Return the segments of one symbol's candles (``x`` its features, ``known`` where its
    label resolved): training rows open more than ``purge_ms`` (the embargo) before
    ``cut_ms`` (a forecast target is formed from the training rows after its own, so the
    last one ends there: the pooled rows' purge), validation rows from ``cut_ms`` on; runs of
    candles with every feature defined, those with neither part left out."""
    defined = np.flatnonzero(np.isfinite(x).all(axis=1))
    # a candle's place in time: a missing candle breaks the run like an undefined feature
    slot = (start_ms[defined] - start_ms[0]) // candle_ms if len(defined) else defined
    out = []
    for lo, hi in consecutive_runs(slot.astype(np.int64)):
        rows = defined[lo:hi]
        opens = start_ms[rows]
        train_stop = int(np.searchsorted(opens, cut_ms - purge_ms, "left"))
        valid_start = int(np.searchsorted(opens, cut_ms, "left"))
        seg = Segment(
            symbol=symbol,
            x=np.asarray(x[rows], dtype=np.float64),
            y=np.where(known[rows], y[rows], 0).astype(np.int8),
            known=known[rows].copy(),
            train_stop=train_stop,
            valid_start=valid_start,
            ts_ms=opens.astype(np.int64),
        )
        if seg.train_stop or seg.valid_rows:
            out.append(seg)
    return out


def validation_labels(segments: Sequence[Segment]) -> npt.NDArray[np.int8]:
    """Return the validation labels of ``segments``, segment after segment."""
    parts = [s.y[s.scored] for s in segments]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int8)


def validation_index(
    segments: Sequence[Segment],
) -> tuple[npt.NDArray[np.str_], IntArray]:
    """Return the symbol and decision-candle open time of each validation row of
    ``segments``, in ``validation_labels``' order; segments without times are refused."""
    untimed = [s.symbol for s in segments if s.valid_rows and len(s.ts_ms) != len(s.y)]
    if untimed:
        raise ValueError(f"segments of {', '.join(untimed)} carry no open times")
    symbols = [np.full(s.valid_rows, s.symbol) for s in segments]
    times = [s.ts_ms[s.scored] for s in segments if s.valid_rows]
    return (
        np.concatenate(symbols) if symbols else np.zeros(0, dtype=np.str_),
        np.concatenate(times) if times else _no_times(),
    )
