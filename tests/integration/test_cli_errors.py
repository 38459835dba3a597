"""``qt`` refuses bad outputs and unusable databases with one clear line (exit 2), never a
traceback, and checks a backtest's outputs before it runs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

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
