"""Candles an import would replace with different values.

An upsert replaces a stored candle silently; importing the futures file of a symbol on top of
its spot series once replaced 58,556 spot candles that way. Before writing, an import counts the
rows of its series that the store (or an earlier file of the same import) holds with other
values, and refuses unless told to replace them. Equal rows are no conflict: importing a file
twice is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.domain.market import CandleSeries
from core.ports import CandleRepo

_VALUES = ("open", "high", "low", "close", "volume")
BATCH_ROWS = 50_000  # rows compared per read: memory stays flat on a big import


@dataclass(frozen=True, slots=True, kw_only=True)
class CandleConflicts:
    """How many candles differ from the stored ones, and the first of them."""

    rows: int = 0
    first_ms: int | None = None

    def __add__(self, other: CandleConflicts) -> CandleConflicts:
        firsts = [ts for ts in (self.first_ms, other.first_ms) if ts is not None]
        return CandleConflicts(rows=self.rows + other.rows, first_ms=min(firsts, default=None))


def differing(new: CandleSeries, old: CandleSeries) -> CandleConflicts:
    """Return the rows of ``new`` whose open time ``old`` has with other values.

    Both series are sorted with distinct open times (as validation leaves them).
    """
    _, i, j = np.intersect1d(new.ts_ms, old.ts_ms, assume_unique=True, return_indices=True)
    if len(i) == 0:
        return CandleConflicts()
    differ = np.zeros(len(i), dtype=bool)
    for column in _VALUES:
        differ |= getattr(new, column)[i] != getattr(old, column)[j]
    if not differ.any():
        return CandleConflicts()
    return CandleConflicts(rows=int(differ.sum()), first_ms=int(new.ts_ms[i][differ].min()))


async def stored_conflicts(
    repo: CandleRepo, exchange: str, series: CandleSeries
) -> CandleConflicts:
    """Return the candles of ``series`` that ``repo`` holds for ``exchange`` with other values."""
    found = CandleConflicts()
    for lo in range(0, len(series), BATCH_ROWS):
        part = series.slice(lo, lo + BATCH_ROWS)
        stored = await repo.load(
            exchange, series.symbol, series.timeframe, int(part.ts_ms[0]), int(part.ts_ms[-1]) + 1
        )
        if len(stored):
            found = found + differing(part, stored)
    return found
