"""Write an import's candles so that an import stopped midway can be taken back whole.

An import writes in short batches (a running bot never waits long behind it), so a Ctrl-C or a
SIGTERM midway once left 1.8 M of a file's 5 M candles stored, without a word: the series then
looked complete up to where the import had stopped. ``CandleImport`` stops between two batches
when asked to, and ``undo`` puts every candle it touched back as it was before: the ones it
added are deleted, the ones it replaced (``--replace``) get their old values back. Each batch
reads what is stored in its range before it writes, so the undo is exact whatever the files
overlap (two files of one series in one import included).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.domain.market import CandleSeries
from core.ports import CandleRepo

BATCH_ROWS = 20_000  # rows written between two looks at the stop request
_VALUES = ("open", "high", "low", "close", "volume")


class ImportStopped(Exception):
    """The import was asked to stop; ``written`` candles were written before it did."""

    def __init__(self, written: int) -> None:
        super().__init__(f"the import was stopped after {written} candles")
        self.written = written


@dataclass(frozen=True, slots=True)
class _Change:
    """What one batch changed: the open times it added, the stored rows it overwrote."""

    repo: CandleRepo
    exchange: str
    added_ms: npt.NDArray[np.int64]
    replaced: CandleSeries


class CandleImport:
    """Write series batch by batch, remembering what each batch changed (see the module)."""

    def __init__(self, stop_requested: Callable[[], bool], *, batch_rows: int = BATCH_ROWS) -> None:
        self._stop_requested = stop_requested
        self._batch_rows = batch_rows
        self._changes: list[_Change] = []
        self.written = 0

    async def write(self, repo: CandleRepo, exchange: str, series: CandleSeries) -> int:
        """Write ``series`` (sorted, distinct open times); raise ``ImportStopped`` before a
        batch once a stop was requested. Return the rows written."""
        for lo in range(0, len(series), self._batch_rows):
            if self._stop_requested():
                raise ImportStopped(self.written)
            part = series.slice(lo, lo + self._batch_rows)
            first, last = int(part.ts_ms[0]), int(part.ts_ms[-1])
            before = await repo.load(exchange, part.symbol, part.timeframe, first, last + 1)
            # Noted before the write: a batch cut off by a failure is undone all the same
            # (deleting a candle that is not there, or writing back the value it has, is a no-op).
            self._changes.append(_change(repo, exchange, part, before))
            await repo.upsert(exchange, part)
            self.written += len(part)
        return len(series)

    async def undo(self) -> int:
        """Put back every candle written so far as it was; return how many were written."""
        written = self.written
        while self._changes:
            change = self._changes[-1]  # newest first: a later file may overwrite an earlier one
            symbol, timeframe = change.replaced.symbol, change.replaced.timeframe
            await change.repo.delete(change.exchange, symbol, timeframe, change.added_ms)
            if len(change.replaced):
                await change.repo.upsert(change.exchange, change.replaced)
            self._changes.pop()  # only once it is undone: an undo that failed can be retried
        self.written = 0
        return written


def _change(repo: CandleRepo, exchange: str, part: CandleSeries, before: CandleSeries) -> _Change:
    added = ~np.isin(part.ts_ms, before.ts_ms, assume_unique=True)
    _, i, j = np.intersect1d(part.ts_ms, before.ts_ms, assume_unique=True, return_indices=True)
    differ = np.zeros(len(before), dtype=bool)
    for column in _VALUES:
        differ[j] |= getattr(part, column)[i] != getattr(before, column)[j]
    return _Change(
        repo=repo,
        exchange=exchange,
        added_ms=part.ts_ms[added].copy(),
        replaced=before.mask(differ),
    )
