"""Candles read back from storage are checked like files: a future-dated row an earlier version
stored is left out, with one line saying so and how to delete it."""

from __future__ import annotations

import numpy as np

from core.domain.market import CandleSeries
from core.market.stored import load_checked
from core.market.synthetic import generate_candles
from storage.memory import MemoryStorage

H = 3_600_000
T0 = 1_704_067_200_000
NOW = T0 + 100 * H


def with_a_2027_candle(series: CandleSeries) -> CandleSeries:
    ts = series.ts_ms.copy()
    ts[-1] = 1_802_944_800_000  # the last row mistyped as 2027, as an old --repair kept it
    return CandleSeries.from_columns(
        series.symbol, "1h", ts, series.open, series.high, series.low, series.close,
        series.volume,
    )  # fmt: skip


async def test_a_stored_future_candle_is_left_out_and_said_so() -> None:
    repo = MemoryStorage().candles
    await repo.upsert(
        "binance", with_a_2027_candle(generate_candles("BTC/USDT", "1h", 50, seed=1, start_ms=T0))
    )

    loaded = await load_checked(repo, "binance", "BTC/USDT", "1h", now_ms=NOW)

    assert len(loaded.series) == 49 and int(loaded.series.ts_ms[-1]) == T0 + 48 * H
    assert loaded.dropped_ms.tolist() == [1_802_944_800_000]
    assert loaded.notice == (
        "binance spot BTC/USDT 1h: 1 stored candle left out, breaking a rule (future=1); "
        "`qt data check --repair` deletes such rows"
    )


async def test_a_clean_series_loads_whole_without_a_notice() -> None:
    repo = MemoryStorage().candles
    series = generate_candles("BTC/USDT", "1h", 50, seed=1, start_ms=T0)
    await repo.upsert("binance", series)

    loaded = await load_checked(repo, "binance", "BTC/USDT", "1h", now_ms=NOW, start_ms=T0 + H)

    assert loaded.notice is None and len(loaded.dropped_ms) == 0
    np.testing.assert_array_equal(loaded.series.ts_ms, series.ts_ms[1:])
