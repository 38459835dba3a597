"""``qt data import`` racing another import, and interrupted: the README's promise (stored
candles a file holds with other values are reported, and nothing is written unless --replace)
holds whatever runs beside it or stops it. The harness is ``test_cli``'s."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
from typer.testing import Result

from bot.file_lock import FileLock
from core.domain.market import CandleSeries
from core.market.synthetic import generate_candles
from storage import open_storage
from tests.integration.test_cli import Cli, candles, flat, write_csv
from tests.integration.test_cli import cli as cli  # the fixture, re-exported for pytest

ROOT = Path(__file__).resolve().parents[2]


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


def write_big_csv(path: Path, rows: int) -> Path:
    series = generate_candles("BTC/USDT", "1m", rows, seed=1, start_ms=1_577_836_800_000)
    columns = ("open", "high", "low", "close", "volume")
    table = pa.table({"timestamp": series.ts_ms, **{c: getattr(series, c) for c in columns}})
    pa_csv.write_csv(table, path, pa_csv.WriteOptions(quoting_style="none"))
    return path


def stored_rows(db_file: Path) -> int:
    """Count the stored candles (0 while the database or its table does not exist yet)."""
    if not db_file.exists():
        return 0
    try:
        with sqlite3.connect(db_file, timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM candles").fetchone()[0])
    except sqlite3.OperationalError:  # no table yet: the import is still migrating
        return 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_import_stopped_midway_takes_back_what_it_wrote_and_says_so(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """Ctrl-C midway through a 5 M-candle import ended it with status 130, printed nothing and
    left 1.8 M candles stored, a series that looked whole up to there (SIGTERM: the same, with
    the process killed). A real process, for real signal handling."""
    csv = write_big_csv(tmp_path / "BTC_USDT-1m.csv", 300_000)  # 15 batches of writes
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("QT__")}
    env |= {"QT__APP__DATA_DIR": str(tmp_path / "ud"), "PYTHONPATH": str(ROOT)}
    db_file = tmp_path / "ud" / "quantum_trader.sqlite"
    proc = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "bot.cli", "data", "import", str(csv)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while stored_rows(db_file) == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(sig)  # midway: the first batches are in
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()

    assert proc.returncode == 128 + sig, (proc.returncode, out, err)
    said = flat(err)
    assert f"stopped by {sig.name}: nothing was imported (the " in said
    assert "candles it had written were removed again); the database is as it was" in said
    assert "candles -> binance" not in out
    assert stored_rows(db_file) == 0
