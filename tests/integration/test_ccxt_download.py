"""ccxt end to end against a fake Binance on 127.0.0.1: pagination, resume, 429, exact candles."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from core.domain.market import CandleSeries
from core.errors import TemporaryError
from core.exchange.ccxt import CcxtMarketData, make_ccxt_exchange
from core.market.download import DownloadResult, download_candles
from core.market.importers import read_candle_file
from core.market.synthetic import generate_candles
from storage.memory import MemoryStorage
from tests.fakes import Sleeps
from tests.fakes_http import FakeBinance, point_ccxt_at, set_minimal_markets

H = 3_600_000
T0 = 1_704_067_200_000
N = 1_050
SHARED_BTC_1H = (
    Path(__file__).resolve().parents[2].parent / "shared" / "data" / "BTC_USDT-1h.csv.gz"
)


@pytest.fixture
def series() -> CandleSeries:
    return generate_candles("BTC/USDT", "1h", N, seed=99, start_ms=T0, start_price=42_000.0)


@pytest.fixture
async def fake(series: CandleSeries) -> AsyncIterator[FakeBinance]:
    async with FakeBinance({"BTCUSDT": series}, page_limit=300) as server:
        yield server


@pytest.fixture
async def market_data(fake: FakeBinance) -> AsyncIterator[CcxtMarketData]:
    exchange = make_ccxt_exchange("binance", timeout_s=5)
    exchange.enableRateLimit = False  # the fake needs no throttling; keeps the test fast
    point_ccxt_at(exchange, fake.base_url)
    set_minimal_markets(exchange)
    md = CcxtMarketData(exchange)
    yield md
    await md.close()


async def download(
    md: CcxtMarketData, repo: object, sleeps: Sleeps, **kw: object
) -> DownloadResult:
    args = {
        "exchange": "binance",
        "symbol": "BTC/USDT",
        "timeframe": "1h",
        "since_ms": T0,
        "until_ms": T0 + N * H,
        "now_ms": T0 + N * H,
        "page_limit": 1000,
        "sleep": sleeps,
        "rng": random.Random(0),
    }
    args.update(kw)
    return await download_candles(md, repo, **args)  # type: ignore[arg-type]


def assert_same(a: CandleSeries, b: CandleSeries) -> None:
    for col in ("ts_ms", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col))


async def test_pagination_fetches_everything_exactly(
    fake: FakeBinance, market_data: CcxtMarketData, series: CandleSeries
) -> None:
    repo = MemoryStorage().candles
    result = await download(market_data, repo, Sleeps())
    assert result.written == N
    assert fake.served_pages == 4  # 300 + 300 + 300 + 150 (the server caps pages at 300)
    assert [int(r["startTime"]) for r in fake.requests] == [T0 + k * 300 * H for k in range(4)]
    assert_same(await repo.load("binance", "BTC/USDT", "1h"), series)


async def test_resume_after_interruption_continues_without_duplicates(
    fake: FakeBinance, market_data: CcxtMarketData, series: CandleSeries
) -> None:
    repo = MemoryStorage().candles
    fake.fail_after_pages = 2  # then only 500s, more than the retries allow
    sleeps = Sleeps()
    with pytest.raises(TemporaryError, match="ExchangeNotAvailable"):
        await download(market_data, repo, sleeps, attempts=3)
    assert len(sleeps.delays) == 2
    assert await repo.last_ts_ms("binance", "BTC/USDT", "1h") == T0 + 599 * H

    fake.fail_after_pages = None
    fake.requests.clear()
    result = await download(market_data, repo, Sleeps())
    assert result.resumed
    assert int(fake.requests[0]["startTime"]) == T0 + 599 * H  # the newest stored, again
    assert result.written == N - 599
    stored = await repo.load("binance", "BTC/USDT", "1h")
    assert len(np.unique(stored.ts_ms)) == len(stored) == N
    assert_same(stored, series)


async def test_429_is_retried(
    fake: FakeBinance, market_data: CcxtMarketData, series: CandleSeries
) -> None:
    repo = MemoryStorage().candles
    fake.fail_next([429, 500])
    sleeps = Sleeps()
    result = await download(market_data, repo, sleeps, base_delay_s=2.0)
    assert result.written == N
    assert len(sleeps.delays) == 2
    assert sleeps.delays[0] == 2.0  # a rate limit waits the full backoff cap
    assert_same(await repo.load("binance", "BTC/USDT", "1h"), series)


async def test_forming_candle_is_left_out(
    fake: FakeBinance, market_data: CcxtMarketData, series: CandleSeries
) -> None:
    repo = MemoryStorage().candles
    now_ms = T0 + (N - 1) * H + 1_800_000  # half way through the last candle
    result = await download(market_data, repo, Sleeps(), until_ms=now_ms)
    assert result.written == N - 1
    assert_same(await repo.load("binance", "BTC/USDT", "1h"), series.slice(0, N - 1))


@pytest.mark.skipif(not SHARED_BTC_1H.exists(), reason="shared/data is not present")
def test_real_btc_1h_file_validates_and_reports_readme_gaps() -> None:
    loaded = read_candle_file(SHARED_BTC_1H)
    report = loaded.report
    assert loaded.series.symbol == "BTC/USDT"
    assert report.rows == 76_543
    assert (len(report.gaps), report.missing) == (28, 128)
    largest = report.largest_gap
    assert largest is not None and largest.missing == 33
