"""Candles a database already holds are checked like files when they are read: a database an
earlier version wrote (its ``--repair`` kept a mistyped 2027 candle at the end of a series) is
neither backtested to 2027 nor trusted silently, and ``qt data check --repair`` deletes the rows.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from core.domain.market import CandleSeries
from storage import open_storage
from tests.integration.test_cli import Cli, candles, flat
from tests.integration.test_cli import cli as cli  # the fixture, re-exported for pytest

FUTURE_MS = 4_102_444_800_000  # 2100-01-01: after now, whenever the suite runs
ENV = {"QT__TRADING__SYMBOLS": '["BTC/USDT"]', "QT__TRADING__TIMEFRAME": "1h"}


def store_as_an_old_version_did(db_file: Path, series: CandleSeries) -> None:
    """Write ``series`` with its last row dated in the future, past today's validation."""
    ts = series.ts_ms.copy()
    ts[-1] = FUTURE_MS
    bad = CandleSeries.from_columns(
        series.symbol, series.timeframe, ts, series.open, series.high, series.low,
        series.close, series.volume,
    )  # fmt: skip

    async def write() -> None:
        storage = open_storage(f"sqlite+aiosqlite:///{db_file}")
        await storage.start()
        try:
            await storage.candles.upsert("binance", bad)
        finally:
            await storage.stop()

    asyncio.run(write())


def test_a_backtest_from_the_database_leaves_out_a_future_candle_and_says_so(cli: Cli) -> None:
    store_as_an_old_version_did(cli.db_file, candles("BTC/USDT", 300))

    result = cli("backtest", "--no-charts", "--name", "old", **ENV)

    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert "binance spot BTC/USDT 1h: 1 stored candle left out, breaking a rule (future=1)" in out
    assert "`qt data check --repair` deletes such rows" in out
    assert "299 candles," in out
    report = json.loads((cli.data_dir / "backtests" / "backtest-old.json").read_text())
    assert report["end_utc"].startswith("2024-")


def test_check_refuses_a_stored_future_candle_and_repair_deletes_it(cli: Cli) -> None:
    store_as_an_old_version_did(cli.db_file, candles("BTC/USDT", 48))

    refused = cli("data", "check")
    repaired = cli("data", "check", "--repair")
    again = cli("data", "check")
    listed = json.loads(cli("data", "list", "--json").stdout)

    assert refused.exit_code == 1
    assert "future (" in flat(refused.stdout)
    assert "`qt data check --repair` deletes the invalid rows" in flat(refused.stdout)
    assert repaired.exit_code == 0, repaired.output
    assert "deleted 1 invalid stored candles (future=1)" in flat(repaired.stdout)
    assert again.exit_code == 0, again.output
    assert [(s["rows"], s["last"]) for s in listed] == [(47, "2024-01-02T22:00:00Z")]


def test_check_repair_of_a_file_reports_what_import_repair_would_drop(
    cli: Cli, tmp_path: Path
) -> None:
    from tests.integration.test_cli import write_csv

    path = write_csv(
        tmp_path / "BTC_USDT-1h.csv", candles("BTC/USDT", 30), high_below_close_at_row=3
    )
    before = path.read_bytes()

    result = cli("data", "check", "--repair", str(path))

    assert result.exit_code == 0, result.output
    assert "dropped: 1 invalid rows (high_below_open_close=1)" in flat(result.stdout)
    assert path.read_bytes() == before  # a file is never changed
