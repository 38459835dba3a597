"""download_candles: paginated, resumable, validated, retried, closed candles only."""

from __future__ import annotations

import random

import numpy as np
import pytest

from core.domain.market import CandleSeries
from core.errors import CandleValidationError, DataError, TemporaryError
from core.market.download import DownloadResult, download_candles
from core.market.synthetic import generate_candles
from storage.memory import MemoryStorage
from tests.fakes import Sleeps

H = 3_600_000
T0 = 1_704_067_200_000
EX = "binance"
SYM = "BTC/USDT"


class PagedSource:
    """MarketData over a series with a page limit; scripted errors per call number."""

    def __init__(self, series: CandleSeries, *, page_limit: int = 100) -> None:
        self.series = series
        self.page_limit = page_limit
        self.since: list[int | None] = []
        self.errors: dict[int, Exception] = {}  # call number (0-based) -> error
        self.fail_from: int | None = None  # every call from this number on fails

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, since_ms: int | None, limit: int
    ) -> CandleSeries:
        call = len(self.since)
        self.since.append(since_ms)
        if call in self.errors:
            raise self.errors[call]
        if self.fail_from is not None and call >= self.fail_from:
            raise TemporaryError(f"call {call}: 502 from the venue")
        return self.series.between(since_ms).slice(0, min(limit, self.page_limit))


@pytest.fixture
def series() -> CandleSeries:
    return generate_candles(SYM, "1h", 450, seed=21, start_ms=T0)


def assert_same(a: CandleSeries, b: CandleSeries) -> None:
    for col in ("ts_ms", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col))


async def run(source: PagedSource, repo: object, **kw: object) -> DownloadResult:
    args = {
        "exchange": EX,
        "symbol": SYM,
        "timeframe": "1h",
        "since_ms": T0,
        "until_ms": T0 + 450 * H,
        "page_limit": 1000,
        "sleep": Sleeps(),
        "rng": random.Random(0),
    }
    args.update(kw)
    args.setdefault("now_ms", args["until_ms"])  # the range's end is now, unless told
    return await download_candles(source, repo, **args)  # type: ignore[arg-type]


async def test_paginates_through_everything(series: CandleSeries) -> None:
    repo = MemoryStorage().candles
    source = PagedSource(series, page_limit=100)
    seen: list[tuple[int, int]] = []
    result = await run(source, repo, progress=lambda done, total: seen.append((done, total)))
    assert result.written == 450
    assert result.pages == 5
    assert (result.first_ms, result.last_ms) == (T0, T0 + 449 * H)
    assert source.since == [T0 + k * 100 * H for k in range(5)]
    assert_same(await repo.load(EX, SYM, "1h"), series)
    assert seen == [(100, 450), (200, 450), (300, 450), (400, 450), (450, 450)]
    assert result.gaps == () and result.dropped == () and not result.resumed


async def test_still_open_candle_is_not_stored(series: CandleSeries) -> None:
    repo = MemoryStorage().candles
    until = T0 + 449 * H + H // 2  # candle 449 opened but has not closed
    result = await run(PagedSource(series), repo, until_ms=until)
    assert result.last_ms == T0 + 448 * H
    assert await repo.last_ts_ms(EX, SYM, "1h") == T0 + 448 * H


def forming(series: CandleSeries, i: int, close: float) -> CandleSeries:
    """Return ``series`` with candle ``i`` as it looks while it forms (its close so far)."""
    close_col = series.close.copy()
    close_col[i] = close
    high = np.maximum(series.high, close_col)
    low = np.minimum(series.low, close_col)
    return CandleSeries.from_columns(
        SYM, "1h", series.ts_ms, series.open, high, low, close_col, series.volume
    )


async def test_a_candle_still_forming_at_now_is_not_stored_whatever_until_says(
    series: CandleSeries,
) -> None:
    # `qt data download --until <tomorrow>`: the venue returns the current candle, forming.
    repo = MemoryStorage().candles
    now = T0 + 449 * H + H // 2  # candle 449 opened half an hour ago
    result = await run(
        PagedSource(forming(series, 449, 1.0)), repo, until_ms=T0 + 500 * H, now_ms=now
    )
    assert result.last_ms == T0 + 448 * H
    assert await repo.last_ts_ms(EX, SYM, "1h") == T0 + 448 * H


async def test_the_newest_stored_candle_is_fetched_again_so_a_partial_one_is_replaced(
    series: CandleSeries,
) -> None:
    # An earlier version stored candle 299 while it formed; the venue's is final by now.
    repo = MemoryStorage().candles
    await repo.upsert(EX, forming(series, 299, 1.0).slice(0, 300))
    source = PagedSource(series, page_limit=1000)
    result = await run(source, repo)
    assert source.since == [T0 + 299 * H]
    assert result.written == 151
    assert_same(await repo.load(EX, SYM, "1h"), series)


async def test_resumes_after_an_interruption_refetching_one_candle(series: CandleSeries) -> None:
    repo = MemoryStorage().candles
    source = PagedSource(series, page_limit=100)
    source.fail_from = 2  # two pages land, then the venue stays down beyond the retries
    with pytest.raises(TemporaryError):
        await run(source, repo, attempts=3)
    assert await repo.last_ts_ms(EX, SYM, "1h") == T0 + 199 * H  # both pages were kept

    source2 = PagedSource(series, page_limit=100)
    result = await run(source2, repo)
    assert result.resumed
    assert result.start_ms == T0 + 199 * H  # the newest stored one, in case it was forming
    assert source2.since[0] == T0 + 199 * H
    assert result.written == 251  # nothing else stored twice
    assert_same(await repo.load(EX, SYM, "1h"), series)


async def test_nothing_to_do_when_already_complete(series: CandleSeries) -> None:
    repo = MemoryStorage().candles
    await repo.upsert(EX, series)
    source = PagedSource(series)
    result = await run(source, repo)
    assert (result.written, result.pages, source.since) == (0, 0, [])


async def test_temporary_errors_and_rate_limits_are_retried(series: CandleSeries) -> None:
    from core.errors import RateLimited

    repo = MemoryStorage().candles
    source = PagedSource(series, page_limit=200)
    source.errors = {0: RateLimited("429"), 2: TemporaryError("timeout")}
    sleeps = Sleeps()
    result = await run(source, repo, sleep=sleeps, base_delay_s=1.0)
    assert result.written == 450
    assert len(sleeps.delays) == 2
    assert_same(await repo.load(EX, SYM, "1h"), series)


async def test_data_errors_are_not_retried(series: CandleSeries) -> None:
    source = PagedSource(series)
    source.errors = {0: DataError("unknown symbol")}
    with pytest.raises(DataError):
        await run(source, MemoryStorage().candles)
    assert len(source.since) == 1


async def test_invalid_rows_are_dropped_and_counted_or_rejected_when_strict(
    series: CandleSeries,
) -> None:
    high = series.high.copy()
    high[[10, 150]] = 0.0
    cols = {c: getattr(series, c) for c in ("ts_ms", "open", "low", "close", "volume")}
    broken = CandleSeries(symbol=SYM, timeframe="1h", high=high, **cols)
    repo = MemoryStorage().candles
    result = await run(PagedSource(broken, page_limit=100), repo)
    assert result.written == 448
    assert dict(result.dropped) == {"high_below_open_close": 2, "non_positive_price": 2}
    assert [(g.from_ms, g.missing) for g in result.gaps] == [(T0 + 9 * H, 1), (T0 + 149 * H, 1)]

    with pytest.raises(CandleValidationError, match="binance BTC/USDT 1h page since"):
        await run(PagedSource(broken, page_limit=100), MemoryStorage().candles, strict=True)


async def test_gaps_across_pages_and_resume_are_reported(series: CandleSeries) -> None:
    keep = np.ones(len(series), dtype=bool)
    keep[[99, 100, 300]] = False  # 99/100 straddle a page boundary
    holey = series.mask(keep)
    result = await run(PagedSource(holey, page_limit=99), MemoryStorage().candles)
    assert [(g.from_ms, g.to_ms, g.missing) for g in result.gaps] == [
        (T0 + 98 * H, T0 + 101 * H, 2),
        (T0 + 299 * H, T0 + 301 * H, 1),
    ]
    assert result.missing == 3


async def test_since_is_aligned_to_the_grid(series: CandleSeries) -> None:
    source = PagedSource(series)
    result = await run(source, MemoryStorage().candles, since_ms=T0 + 10 * H + 1)
    assert source.since[0] == T0 + 11 * H
    assert result.first_ms == T0 + 11 * H


async def test_weekly_since_is_aligned_to_the_monday_grid() -> None:
    week = 7 * 24 * H
    weeks = generate_candles(SYM, "1w", 20, seed=3, start_ms=T0)  # T0 is a Monday
    source = PagedSource(weeks)
    progress: list[tuple[int, int]] = []
    result = await run(
        source,
        MemoryStorage().candles,
        timeframe="1w",
        since_ms=T0 + 1,
        until_ms=T0 + 20 * week,
        progress=lambda done, total: progress.append((done, total)),
    )
    assert source.since[0] == T0 + week  # the next Monday, not the next epoch-week Thursday
    assert (result.written, result.first_ms, result.gaps) == (19, T0 + week, ())
    assert progress[-1] == (19, 19)


async def test_stops_when_the_venue_has_nothing_new(series: CandleSeries) -> None:
    short = series.slice(0, 120)
    source = PagedSource(short, page_limit=100)
    result = await run(source, MemoryStorage().candles)  # until_ms asks for 450 candles
    assert result.written == 120
    assert source.since == [T0, T0 + 100 * H, T0 + 120 * H]


async def test_backfills_history_before_the_stored_candles(series: CandleSeries) -> None:
    repo = MemoryStorage().candles
    await repo.upsert(EX, series.slice(400, 450))  # e.g. `qt run`'s warm-up: the newest 50
    source = PagedSource(series, page_limit=100)
    seen: list[tuple[int, int]] = []
    result = await run(source, repo, progress=lambda done, total: seen.append((done, total)))
    assert result.written == 400  # what was missing, and only that
    assert (result.start_ms, result.first_ms, result.last_ms) == (T0, T0, T0 + 399 * H)
    assert source.since == [T0 + k * 100 * H for k in range(4)]  # never past the stored ones
    assert result.resumed and result.gaps == ()
    assert seen[-1] == (400, 400)
    assert_same(await repo.load(EX, SYM, "1h"), series)


async def test_fills_before_and_after_the_stored_candles_in_one_run(series: CandleSeries) -> None:
    repo = MemoryStorage().candles
    await repo.upsert(EX, series.slice(200, 300))
    source = PagedSource(series, page_limit=1000)
    result = await run(source, repo)
    assert result.written == 351  # the missing 350 and the newest stored one again
    assert source.since == [T0, T0 + 299 * H]
    assert_same(await repo.load(EX, SYM, "1h"), series)


async def test_an_interrupted_backfill_resumes_into_the_hole_it_left(series: CandleSeries) -> None:
    repo = MemoryStorage().candles
    await repo.upsert(EX, series.slice(300, 450))
    source = PagedSource(series, page_limit=100)
    source.fail_from = 2  # T0..T0+199h land, then the venue stays down
    with pytest.raises(TemporaryError):
        await run(source, repo, attempts=3)

    source2 = PagedSource(series, page_limit=100)
    result = await run(source2, repo)
    assert source2.since == [T0 + 200 * H]
    assert result.written == 100
    assert_same(await repo.load(EX, SYM, "1h"), series)


async def test_a_gap_the_venue_has_too_is_reported_not_invented(series: CandleSeries) -> None:
    keep = np.ones(len(series), dtype=bool)
    keep[200:205] = False  # the venue itself has no candles there (an outage)
    holey = series.mask(keep)
    repo = MemoryStorage().candles
    first = await run(PagedSource(holey, page_limit=1000), repo)
    assert [(g.from_ms, g.to_ms, g.missing) for g in first.gaps] == [
        (T0 + 199 * H, T0 + 205 * H, 5)
    ]

    source = PagedSource(holey, page_limit=1000)
    again = await run(source, repo)  # idempotent: looks into the gap once, writes nothing
    assert (again.written, again.pages, source.since) == (0, 1, [T0 + 200 * H])
    assert again.gaps == first.gaps
    assert_same(await repo.load(EX, SYM, "1h"), holey)


async def test_a_stored_future_candle_does_not_stop_the_download(series: CandleSeries) -> None:
    # An import before the future rule could store a mistyped 2027 candle next to the first
    # one: the download must still fetch everything missing up to now, not resume after 2027.
    repo = MemoryStorage().candles
    future = series.slice(0, 1)
    future = CandleSeries.from_columns(
        SYM, "1h", [1_802_944_800_000], future.open, future.high, future.low, future.close,
        future.volume,
    )  # fmt: skip
    await repo.upsert(EX, series.slice(0, 1))
    await repo.upsert(EX, future)
    result = await run(PagedSource(series, page_limit=100), repo)
    assert result.written == 450  # the first candle again: the newest stored in the range
    assert_same((await repo.load(EX, SYM, "1h")).between(None, T0 + 450 * H), series)
