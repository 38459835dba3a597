"""``qt`` refuses bad outputs and unusable databases with one clear line (exit 2), never a
traceback, and checks a backtest's outputs before it runs."""

from __future__ import annotations

import asyncio
import fcntl
import os
import resource
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import storage.db as storage_db
from storage.migrate import current_revision, head_revision, upgrade
from storage.migration_lock import lock_path
from tests.integration.test_cli import Cli, candles, flat, write_csv
from tests.integration.test_cli import cli as cli  # the fixture (re-exported: pytest finds it)

UNWRITABLE = Path("/sys/qt-backtests")  # creating anything in sysfs fails, even as root


def _backtest_args(tmp_path: Path) -> list[str]:
    data = write_csv(tmp_path / "BTC_USDT-1h.csv", candles("BTC/USDT", 300, seed=7))
    return ["backtest", "--data", str(data), "--no-charts"]


def test_backtest_outputs_are_checked_before_it_runs(cli: Cli, tmp_path: Path) -> None:
    a_file = tmp_path / "report.txt"
    a_file.write_text("not a folder")
    cases = [
        (["--out", str(a_file)], f"{a_file} is a file"),
        (["--out", str(a_file / "deeper")], f"{a_file} is a file"),
        (["--out", str(UNWRITABLE)], f"cannot write the report to {UNWRITABLE}"),
        (["--name", "../escape"], "run_name '../escape' must be"),
    ]
    for extra, message in cases:
        result = cli(*_backtest_args(tmp_path), *extra)
        assert result.exit_code == 2, (extra, result.output)
        assert message in flat(result.stderr), extra
        assert "candles/s" not in result.stdout  # refused before the backtest ran
        assert "Traceback" not in result.output


def _limit_file_size() -> None:
    # Writing past 4 KiB fails with EFBIG, as a full disk fails with ENOSPC (Python ignores
    # SIGXFSZ). A child process only: the limit would bind pytest too.
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def test_a_report_that_cannot_be_written_is_one_line_and_leaves_no_partial_file(
    tmp_path: Path,
) -> None:
    out = tmp_path / "bt"
    out.mkdir()
    earlier = out / "backtest-x.json"
    earlier.write_text("an earlier run of this name\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QT__")}
    env["QT__APP__DATA_DIR"] = str(tmp_path / "ud")
    args = [*_backtest_args(tmp_path), "--out", str(out), "--name", "x"]
    result = subprocess.run(  # noqa: S603 - our own interpreter and module, fixed arguments
        [sys.executable, "-m", "bot.cli", *args],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=_limit_file_size,
    )
    assert "Traceback" not in result.stderr
    assert result.returncode == 2, result.stderr
    assert flat(result.stderr) == (
        f"error: cannot write the report file {earlier}: File too large (no file of the "
        "report was written)"
    )
    assert [p.name for p in out.iterdir()] == [earlier.name]  # no temporary, no 0-byte file
    assert earlier.read_text() == "an earlier run of this name\n"


def _migrated(cli: Cli) -> Path:
    assert cli("db", "upgrade").exit_code == 0
    return cli.db_file


def test_a_database_of_a_newer_version_is_refused_by_name(cli: Cli) -> None:
    db = _migrated(cli)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099'")
    for args in (["data", "list"], ["state", "show"], ["db", "upgrade"]):
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)
        message = flat(result.stderr)
        assert f"{db} is at revision 0099" in message and "newer version" in message
        assert "Traceback" not in result.output


def test_a_file_that_is_not_a_database_is_refused_by_name(cli: Cli, tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_text("junk\n" * 100)
    result = cli("state", "show", QT__DATABASE__URL=f"sqlite+aiosqlite:///{junk}")
    assert result.exit_code == 2, result.output
    assert f"{junk} is not an SQLite database" in flat(result.stderr)
    assert junk.read_text() == "junk\n" * 100  # left as it was


def test_a_database_that_cannot_be_opened_is_refused_by_name(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "a-folder.sqlite"
    folder.mkdir()
    result = cli("data", "list", QT__DATABASE__URL=f"sqlite+aiosqlite:///{folder}")
    assert result.exit_code == 2, result.output
    assert f"cannot open the database {folder}: Is a directory" in flat(result.stderr)
    nowhere = UNWRITABLE / "qt.sqlite"
    result = cli("data", "list", QT__DATABASE__URL=f"sqlite+aiosqlite:///{nowhere}")
    assert result.exit_code == 2, result.output
    assert f"cannot create the folder {UNWRITABLE} of the database" in flat(result.stderr)
    assert "Traceback" not in result.output


def test_a_database_url_may_start_at_the_home_folder(cli: Cli, tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = cli(
        "db", "upgrade", HOME=str(home), QT__DATABASE__URL="sqlite+aiosqlite:///~/qt/qt.sqlite"
    )
    assert result.exit_code == 0, result.output
    assert (home / "qt" / "qt.sqlite").is_file()


# --- databases that are locked, damaged or being migrated ------------------------------------


def _hold_write_lock(db: Path) -> sqlite3.Connection:
    """Return a connection holding ``db``'s write lock: another process, say a big import."""
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO kv_state VALUES ('x', 'y')")
    return other


@pytest.fixture
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage_db, "BUSY_TIMEOUT_MS", 100)  # instead of 10 s


def test_a_database_locked_past_the_busy_timeout_is_one_line(
    cli: Cli, short_busy_timeout: None
) -> None:
    db = _migrated(cli)
    other = _hold_write_lock(db)
    try:
        # Reading needs no write lock (WAL): these do not queue behind the other process.
        for args in (["data", "list"], ["state", "show"], ["db", "upgrade"]):
            result = cli(*args)
            assert result.exit_code == 0, (args, result.output, result.exception)
        result = cli("state", "halt")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert result.exit_code == 2, (result.output, result.exception)
    assert f"the database {db} is locked by another process (waited 0.1 s" in flat(result.stderr)


def test_a_damaged_database_is_one_line(cli: Cli, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "BTC_USDT-1h.csv", candles("BTC/USDT", 2000))
    assert cli("data", "import", str(csv)).exit_code == 0
    db = cli.db_file
    data = bytearray(db.read_bytes())
    data[4096:8192] = b"\xff" * 4096  # a page overwritten: a crash on a bad disk
    db.write_bytes(bytes(data))
    for args in (["data", "list"], ["state", "show"], ["data", "check"]):
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output, result.exception)
        assert f"the database {db} is damaged" in flat(result.stderr), args
        assert "restore it from a backup" in flat(result.stderr)


def test_a_command_waits_for_a_migration_longer_than_the_busy_timeout(
    cli: Cli, short_busy_timeout: None
) -> None:
    db = cli.db_file
    db.parent.mkdir(parents=True)
    asyncio.run(upgrade(f"sqlite+aiosqlite:///{db}", "0001"))  # a previous version's database
    # Another process migrates it, holding the migration lock and the write lock for 1 s,
    # ten times the busy timeout (0002 takes ~17 s on 11 M candles).
    lock = lock_path(str(db)).open("a")
    fcntl.flock(lock, fcntl.LOCK_EX)
    other = _hold_write_lock(db)

    def finish() -> None:
        other.execute("ROLLBACK")  # (it did not get far; the waiting command migrates)
        other.close()
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()

    timer = threading.Timer(1.0, finish)
    timer.start()
    started = time.monotonic()
    try:
        result = cli("state", "show")
    finally:
        timer.join()
    assert result.exit_code == 0, (result.output, result.exception)
    assert time.monotonic() - started >= 1.0  # it waited for the migration
    assert current_revision(f"sqlite+aiosqlite:///{db}") == head_revision()
