"""``qt data import`` racing another import, and interrupted: the README's promise (stored
candles a file holds with other values are reported, and nothing is written unless --replace)
holds whatever runs beside it or stops it. The harness is ``test_cli``'s."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
from typer.testing import Result

from bot.file_lock import FileLock
from core.domain.market import CandleSeries
from storage import open_storage
from tests.integration.test_cli import Cli, candles, flat, write_csv
from tests.integration.test_cli import cli as cli  # the fixture, re-exported for pytest


def store(db_file: Path, series: CandleSeries) -> None:
    async def write() -> None:
        storage = open_storage(f"sqlite+aiosqlite:///{db_file}")
        await storage.start()
        try:
            await storage.candles.upsert("binance", series)
        finally:
            await storage.stop()

    asyncio.run(write())


def stored_volumes(db_file: Path) -> list[float]:
    async def read() -> list[float]:
        storage = open_storage(f"sqlite+aiosqlite:///{db_file}")
        await storage.start()
        try:
            return (await storage.candles.load("binance", "BTC/USDT", "1h")).volume.tolist()
        finally:
            await storage.stop()

    return asyncio.run(read())


def doubled_volume(series: CandleSeries) -> CandleSeries:
    return CandleSeries.from_columns(
        series.symbol, series.timeframe, series.ts_ms, series.open, series.high, series.low,
        series.close, series.volume * 2,
    )  # fmt: skip


def test_an_import_started_beside_another_waits_and_then_reports_its_candles(
    cli: Cli, tmp_path: Path
) -> None:
    """Two imports of one series started together both counted their conflicts before either
    wrote, then both wrote: the series was a mix of the two files and neither said a word."""
    assert cli("db", "upgrade").exit_code == 0
    first = candles("BTC/USDT", 48)
    (tmp_path / "b").mkdir()
    other = write_csv(tmp_path / "b" / "BTC_USDT-1h.csv", doubled_volume(first))
    running = FileLock(Path(f"{cli.db_file}.import.lock"))
    running.acquire()  # the first import, between its conflict check and its writes
    results: list[Result] = []
    second = threading.Thread(target=lambda: results.append(cli("data", "import", str(other))))
    second.start()
    second.join(timeout=1.0)  # an import that does not wait is done by now
    store(cli.db_file, first)  # the first import's writes
    running.release()
    second.join(timeout=30)

    assert not second.is_alive()
    result = results[0]
    assert result.exit_code == 2, result.output
    assert "waiting for another import into this database (pid " in flat(result.stdout)
    assert "48 candles differ from those stored" in flat(result.stderr)
    assert "Nothing was written." in flat(result.stderr)
    np.testing.assert_array_equal(stored_volumes(cli.db_file), first.volume)
