"""Download candle history page by page into a CandleRepo, resumably.

Each page is validated and written before the next is asked for, so an interruption loses at
most one page and the next run starts after the newest stored candle. Only closed candles are
stored: a candle whose close time (open + timeframe) is after ``until_ms`` is still forming.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from core.domain.market import grid_ceil_ms, timeframe_to_ms
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
    start_ms: int  # open time the run started from (after resuming)
    pages: int
    written: int  # candles written by this run
    first_ms: int | None  # oldest candle written by this run
    last_ms: int | None  # newest candle written by this run
    gaps: tuple[Gap, ...]  # missing candles between stored ones, seen by this run
    dropped: tuple[tuple[str, int], ...]  # invalid rows dropped, per rule
    resumed: bool  # True when stored candles moved the start forward

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
    page_limit: int = 1000,
    progress: Progress | None = None,
    strict: bool = False,
    attempts: int = 6,
    base_delay_s: float = 1.0,
    max_delay_s: float = 60.0,
    sleep: Sleep = asyncio.sleep,
    rng: random.Random | None = None,
) -> DownloadResult:
    """Fetch closed candles with open time in ``[since_ms, until_ms - timeframe]`` into ``repo``.

    Resume from the newest stored candle when it is later than ``since_ms``. Temporary errors
    and rate limits are retried with backoff; invalid rows are dropped and counted (or, with
    ``strict``, raise CandleValidationError). ``progress(done, total)`` counts grid candles.
    Stop when the range is covered or a page brings nothing new.
    """
    if page_limit < 1:
        raise ValueError(f"page_limit must be >= 1, was {page_limit}")
    tf_ms = timeframe_to_ms(timeframe)
    start_ms = grid_ceil_ms(since_ms, timeframe)
    stored_last = await repo.last_ts_ms(exchange, symbol, timeframe)
    resumed = stored_last is not None and stored_last + tf_ms > start_ms
    if stored_last is not None and resumed:
        start_ms = stored_last + tf_ms
    last_open_ms = until_ms - tf_ms  # newest open time whose candle has closed by until_ms
    total = max(0, (last_open_ms - start_ms) // tf_ms + 1)
    rng = rng or random.Random()

    cursor = start_ms
    prev_ms = stored_last  # newest candle known before each page, to see gaps across pages
    pages = written = 0
    first_ms: int | None = None
    gaps: list[Gap] = []
    dropped: dict[str, int] = {}
    source_name = f"{exchange} {symbol} {timeframe}"

    while cursor <= last_open_ms:
        page_since = cursor
        raw = await retry(
            partial(source.fetch_ohlcv, symbol, timeframe, page_since, page_limit),
            attempts=attempts,
            base_delay_s=base_delay_s,
            max_delay_s=max_delay_s,
            sleep=sleep,
            rng=rng,
            what=f"fetch_ohlcv {source_name} since {page_since}",
        )
        pages += 1
        page = raw.between(page_since, last_open_ms + 1)
        if len(page) == 0:
            break  # the venue has nothing newer: done (or it lags; the next run resumes)
        page_max_ms = int(page.ts_ms.max())
        page_source = f"{source_name} page since {page_since}"
        if strict:
            validate_candles(page, source=page_source)
        else:
            page, report = repair_candles(page, source=page_source)
            for rule, count in report.dropped:
                dropped[rule] = dropped.get(rule, 0) + count
            if len(page) == 0:
                cursor = page_max_ms + tf_ms  # every row was bad: step past them
                continue
        written += await repo.upsert(exchange, page)
        first_ms = int(page.ts_ms[0]) if first_ms is None else first_ms
        bridge = page.ts_ms if prev_ms is None else np.concatenate([[prev_ms], page.ts_ms])
        gaps.extend(find_gaps(bridge, tf_ms))
        prev_ms = int(page.ts_ms[-1])
        cursor = prev_ms + tf_ms
        if progress is not None:
            progress(min(total, (cursor - start_ms) // tf_ms), total)

    return DownloadResult(
        exchange=exchange,
        symbol=symbol,
        timeframe=timeframe,
        start_ms=start_ms,
        pages=pages,
        written=written,
        first_ms=first_ms,
        last_ms=prev_ms if written else None,
        gaps=tuple(gaps),
        dropped=tuple(sorted(dropped.items())),
        resumed=resumed,
    )
