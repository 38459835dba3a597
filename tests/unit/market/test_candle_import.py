"""CandleImport: an import stopped between two batches is taken back whole, the candles it
replaced getting their old values back; one it is not asked to stop writes everything."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from core.domain.market import CandleSeries
from core.errors import StorageUnavailable
from core.market.candle_import import CandleImport, ImportStopped
from core.market.synthetic import generate_candles
from storage.memory import MemoryStorage

H = 3_600_000
T0 = 1_704_067_200_000


def scaled(series: CandleSeries, factor: float) -> CandleSeries:
    return CandleSeries.from_columns(
        series.symbol, series.timeframe, series.ts_ms, series.open * factor,
        series.high * factor, series.low * factor, series.close * factor, series.volume,
    )  # fmt: skip


def assert_same(a: CandleSeries, b: CandleSeries) -> None:
    for column in ("ts_ms", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(a, column), getattr(b, column))


class StopAfter:
    """A stop request that comes once ``batches`` batches were written."""

    def __init__(self, batches: int) -> None:
        self.looks = 0
        self.batches = batches

    def __call__(self) -> bool:
        self.looks += 1
        return self.looks > self.batches


async def test_an_import_stopped_midway_is_taken_back_whole() -> None:
    repo = MemoryStorage().candles
    history = generate_candles("BTC/USDT", "1h", 100, seed=1, start_ms=T0)
    stored = history.slice(20, 40)  # 20 candles already stored, which a --replace overwrites
    await repo.upsert("binance", stored)
    first = scaled(history.slice(0, 30), 1.01)  # two files of one series, overlapping
    second = scaled(history.slice(25, 100), 1.02)
    writer = CandleImport(StopAfter(4), batch_rows=10)

    await writer.write(repo, "binance", first)  # 3 batches
    with pytest.raises(ImportStopped) as stopped:
        await writer.write(repo, "binance", second)  # 1 batch, then the stop
    assert stopped.value.written == 40
    assert len(await repo.load("binance", "BTC/USDT", "1h")) == 40  # rows 0-34 written, 35-39 kept

    assert await writer.undo() == 40
    assert_same(await repo.load("binance", "BTC/USDT", "1h"), stored)
    assert writer.written == 0


async def test_an_import_not_stopped_writes_every_batch() -> None:
    repo = MemoryStorage().candles
    series = generate_candles("BTC/USDT", "1h", 95, seed=2, start_ms=T0)
    writer = CandleImport(lambda: False, batch_rows=10)

    assert await writer.write(repo, "binance", series) == 95

    assert writer.written == 95
    assert_same(await repo.load("binance", "BTC/USDT", "1h"), series)


class FailingOnUpsert:
    """A candle repo whose ``fail_at``-th upsert writes its rows and then fails, as a write
    whose commit is not known to have happened (the disk filled up)."""

    def __init__(self, inner: Any, fail_at: int) -> None:
        self.inner = inner
        self.fail_at = fail_at
        self.upserts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def upsert(self, exchange: str, series: CandleSeries) -> int:
        self.upserts += 1
        written = await self.inner.upsert(exchange, series)
        if self.upserts == self.fail_at:
            raise StorageUnavailable("the database cannot be used now: database or disk is full")
        return int(written)


async def test_an_import_failing_midway_is_taken_back_with_the_batch_that_failed() -> None:
    inner = MemoryStorage().candles
    stored = generate_candles("BTC/USDT", "1h", 5, seed=4, start_ms=T0 + 12 * H)
    await inner.upsert("binance", stored)
    repo = FailingOnUpsert(inner, fail_at=2)
    writer = CandleImport(lambda: False, batch_rows=10)

    with pytest.raises(StorageUnavailable):
        await writer.write(
            repo, "binance", generate_candles("BTC/USDT", "1h", 40, seed=5, start_ms=T0)
        )

    await writer.undo()
    assert_same(await inner.load("binance", "BTC/USDT", "1h"), stored)
