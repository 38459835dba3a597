"""Download candle history page by page into a CandleRepo, resumably.

Only what the repo lacks in the requested range is fetched: history before the stored candles,
holes between them, candles after them. Each page is validated and written before the next is
asked for, so an interruption loses at most one page and the next run fetches what is still
missing, nothing twice but the newest stored candle: the candles after it are fetched from it,
not after it, so a candle stored while it was still forming (by an earlier version, which did
so for an ``--until`` after now) gets the venue's final values, at no extra request. Only
closed candles are stored: a candle whose close time (open + timeframe) is after ``until_ms``
or after now is still forming, and ``until_ms`` is capped at now.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import numpy.typing as npt

from core.domain.market import grid_ceil_ms, grid_floor_ms, timeframe_to_ms
from core.market.validation import Gap, find_gaps, repair_candles, validate_candles
from core.ports import CandleRepo, MarketData
from core.retry import Sleep, retry

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadResult:
    """What one download run did."""

    exchange: str
    symbol: str
    timeframe: str
    start_ms: int  # first open time this run asked for (the range's start if none was missing)
    pages: int
    written: int  # candles written by this run
    first_ms: int | None  # oldest candle written by this run
    last_ms: int | None  # newest candle written by this run
    gaps: tuple[Gap, ...]  # candles still missing between stored ones in the range, after the run
    dropped: tuple[tuple[str, int], ...]  # invalid rows dropped, per rule
    resumed: bool  # True when candles already stored in the range were kept, not fetched again

    @property
    def missing(self) -> int:
        """Return the number of missing candles over all gaps."""
        return sum(g.missing for g in self.gaps)


async def download_candles(
    source: MarketData,
    repo: CandleRepo,
    *,
    exchange: str,
    symbol: str,
    timeframe: str,
    since_ms: int,
    until_ms: int,
    now_ms: int,
    page_limit: int = 1000,
    progress: Progress | None = None,
    strict: bool = False,
    attempts: int = 6,
    base_delay_s: float = 1.0,
    max_delay_s: float = 60.0,
    sleep: Sleep = asyncio.sleep,
    rng: random.Random | None = None,
) -> DownloadResult:
    """Fetch the closed candles with open time in ``[since_ms, min(until_ms, now_ms) -
    timeframe]`` that ``repo`` lacks (``now_ms``: the wall clock, which the core does not read).

    The missing stretches are fetched oldest first: before the stored candles, each hole between
    them, after them. A hole the venue has no candles for either (an outage) costs one request
    per run and is reported in ``gaps``, never filled in. Temporary errors and rate limits are
    retried with backoff; invalid rows are dropped and counted (or, with ``strict``, raise
    CandleValidationError). ``progress(done, total)`` counts the missing grid candles.
    """
    if page_limit < 1:
        raise ValueError(f"page_limit must be >= 1, was {page_limit}")
    tf_ms = timeframe_to_ms(timeframe)
    start_ms = grid_ceil_ms(since_ms, timeframe)
    # The newest open time whose candle has closed by until_ms, and by now: a venue serves the
    # candle still forming as its newest row, and a later run would never fetch it again.
    last_open_ms = grid_floor_ms(min(until_ms, now_ms) - tf_ms, timeframe)
    stored = np.empty(0, dtype=np.int64)
    if start_ms <= last_open_ms:
        stored = await repo.open_times(exchange, symbol, timeframe, start_ms, last_open_ms + 1)
    todo = _from_the_newest_stored(missing_stretches(stored, start_ms, last_open_ms, tf_ms), stored)
    total = sum((hi - lo) // tf_ms + 1 for lo, hi in todo)
    rng = rng or random.Random()
    fetch = partial(
        retry,
        attempts=attempts,
        base_delay_s=base_delay_s,
        max_delay_s=max_delay_s,
        sleep=sleep,
        rng=rng,
    )

    pages = written = done = 0
    first_ms: int | None = None
    last_ms: int | None = None
    fetched: list[npt.NDArray[np.int64]] = []
    dropped: dict[str, int] = {}
    source_name = f"{exchange} {symbol} {timeframe}"

    for lo, hi in todo:
        cursor = lo
        while cursor <= hi:
            page_since = cursor
            raw = await fetch(
                partial(source.fetch_ohlcv, symbol, timeframe, page_since, page_limit),
                what=f"fetch_ohlcv {source_name} since {page_since}",
            )
            pages += 1
            page = raw.between(page_since, hi + 1)
            if len(page) == 0:
                break  # the venue has nothing here (yet): a gap, or it lags; the next run asks
            page_max_ms = int(page.ts_ms.max())
            page_source = f"{source_name} page since {page_since}"
            if strict:
                validate_candles(page, source=page_source, now_ms=now_ms)
            else:
                page, report = repair_candles(page, source=page_source, now_ms=now_ms)
                for rule, count in report.dropped:
                    dropped[rule] = dropped.get(rule, 0) + count
                if len(page) == 0:
                    cursor = page_max_ms + tf_ms  # every row was bad: step past them
                    continue
            written += await repo.upsert(exchange, page)
            fetched.append(page.ts_ms)
            first_ms = int(page.ts_ms[0]) if first_ms is None else first_ms
            last_ms = int(page.ts_ms[-1])
            cursor = last_ms + tf_ms
            if progress is not None:
                progress(done + (cursor - lo) // tf_ms, total)
        if progress is not None and cursor <= hi:
            progress(done + (hi - lo) // tf_ms + 1, total)  # the rest is not at the venue
        done += (hi - lo) // tf_ms + 1

    present = np.sort(np.concatenate([stored, *fetched])) if fetched else stored
    return DownloadResult(
        exchange=exchange,
        symbol=symbol,
        timeframe=timeframe,
        start_ms=todo[0][0] if todo else start_ms,
        pages=pages,
        written=written,
        first_ms=first_ms,
        last_ms=last_ms,
        gaps=find_gaps(present, tf_ms),
        dropped=tuple(sorted(dropped.items())),
        resumed=len(stored) > 0,
    )


def _from_the_newest_stored(
    todo: list[tuple[int, int]], stored_ms: npt.NDArray[np.int64]
) -> list[tuple[int, int]]:
    """Start the stretch after the newest stored candle at that candle: the same first page,
    one row more, and a candle stored while it formed is replaced by the final one."""
    if not todo or len(stored_ms) == 0:
        return todo
    newest = int(stored_ms[-1])
    lo, hi = todo[-1]
    if hi >= lo > newest:
        return [*todo[:-1], (newest, hi)]
    return todo


def missing_stretches(
    stored_ms: npt.NDArray[np.int64], start_ms: int, last_open_ms: int, tf_ms: int
) -> list[tuple[int, int]]:
    """Return the ``(first, last)`` open times of every run of grid candles in
    ``[start_ms, last_open_ms]`` missing from the sorted, on-grid ``stored_ms``."""
    if start_ms > last_open_ms:
        return []
    if len(stored_ms) == 0:
        return [(start_ms, last_open_ms)]
    out = []
    if stored_ms[0] > start_ms:
        out.append((start_ms, int(stored_ms[0]) - tf_ms))
    out.extend((g.from_ms + tf_ms, g.to_ms - tf_ms) for g in find_gaps(stored_ms, tf_ms))
    if stored_ms[-1] < last_open_ms:
        out.append((int(stored_ms[-1]) + tf_ms, last_open_ms))
    return out
