"""Big candle series are streamed to and from SQLite in batches: the memory of an upsert or a
load does not grow with the series beyond the numpy columns themselves (5 M rows once peaked at
1.8 GB writing, as Python lists, and at 2.0 GB reading, as Python tuples), and a download reads
only the open times it compares."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np

from core.domain.market import CandleSeries
from core.market.download import download_candles
from core.market.synthetic import generate_candles
from storage.repositories import CANDLE_BATCH_ROWS, SqlStorage


async def test_upsert_holds_one_batch_of_python_rows_at_a_time(tmp_path: Path) -> None:
    rows = 5 * CANDLE_BATCH_ROWS
    series = generate_candles("BTC/USDT", "1m", rows, seed=1, start_ms=1_577_836_800_000)
    storage = SqlStorage(f"sqlite+aiosqlite:///{tmp_path / 'qt.sqlite'}")
    await storage.start()
    try:
        tracemalloc.start()
        try:
            await storage.candles.upsert("binance", series)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert len(await storage.candles.load("binance", "BTC/USDT", "1m")) == rows
    finally:
        await storage.stop()
    # A batch of 20,000 rows as tuples of Python values is about 6 MB; the whole series as
    # Python lists and tuples was 26 MB (and grows with the series).
    assert peak < 15_000_000, f"upsert of {rows:,} rows peaked at {peak / 1e6:.1f} MB"


async def test_load_holds_one_batch_of_python_rows_at_a_time(tmp_path: Path) -> None:
    """Reading a stored 5 M-row series once cost 2.0 GB (every row a tuple of Python values
    before the numpy columns were built), in qt data check, qt backtest and qt data download."""
    rows = 5 * CANDLE_BATCH_ROWS
    series = generate_candles("BTC/USDT", "1m", rows, seed=1, start_ms=1_577_836_800_000)
    storage = SqlStorage(f"sqlite+aiosqlite:///{tmp_path / 'qt.sqlite'}")
    await storage.start()
    try:
        await storage.candles.upsert("binance", series)
        tracemalloc.start()
        try:
            loaded = await storage.candles.load("binance", "BTC/USDT", "1m")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        await storage.stop()
    assert len(loaded) == rows
    for column in ("ts_ms", "open", "high", "low", "close", "volume"):
        assert np.array_equal(getattr(loaded, column), getattr(series, column))
    # The six columns are 4.8 MB and a batch of rows as Python values about 3 MB; every row as
    # Python values at once was 35 MB (and grows with the series).
    assert peak < 15_000_000, f"load of {rows:,} rows peaked at {peak / 1e6:.1f} MB"


class NothingNew:
    """A venue with no candles to add (every call would be a failed expectation here)."""

    calls = 0

    async def fetch_ohlcv(
        self, symbol: str, timeframe: str, since_ms: int | None, limit: int
    ) -> CandleSeries:
        self.calls += 1
        return CandleSeries.empty(symbol, timeframe)


async def test_a_download_over_a_stored_range_reads_only_the_open_times(tmp_path: Path) -> None:
    """qt data download over a stored range fetches nothing, but read every stored candle to
    find what it lacked: 2.0 GB for 5 M rows; it needs their open times alone."""
    rows = 5 * CANDLE_BATCH_ROWS
    start_ms = 1_577_836_800_000
    series = generate_candles("BTC/USDT", "1m", rows, seed=1, start_ms=start_ms)
    last_ms = int(series.ts_ms[-1])
    storage = SqlStorage(f"sqlite+aiosqlite:///{tmp_path / 'qt.sqlite'}")
    await storage.start()
    venue = NothingNew()
    try:
        await storage.candles.upsert("binance", series)
        tracemalloc.start()
        try:
            result = await download_candles(
                venue,
                storage.candles,
                exchange="binance",
                symbol="BTC/USDT",
                timeframe="1m",
                since_ms=start_ms,
                until_ms=last_ms + 60_000,
                now_ms=last_ms + 3_600_000,
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        await storage.stop()
    assert (result.written, result.pages, venue.calls, result.gaps) == (0, 0, 0, ())
    # The open times are 0.8 MB; every stored column was 4.8 MB (as Python tuples, 35 MB).
    assert peak < 4_000_000, f"download over {rows:,} stored rows peaked at {peak / 1e6:.1f} MB"
