"""Settings that name paths ``qt`` cannot use (a .env it cannot read or decode, a data folder
that is a file or cannot be created, a database folder that cannot be created) are one line
and a failed status for every command, never a traceback (issue 9 follow-up, item 13)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from bot.cli import app
from tests.integration.test_cli import TINY_DEMO, Cli, _command_paths, candles, flat, write_csv
from tests.integration.test_cli import cli as cli  # the fixture (re-exported: pytest finds it)
from tests.integration.test_cli import offline_dns as offline_dns  # the fixture

UNREADABLE = Path("/proc/self/mem")  # a file whose reading fails (EIO), even for root
NOT_CREATABLE = Path("/proc/qt-data")  # procfs refuses new folders, even to root

# Every command with the arguments it needs to get as far as reading its settings.
ARGS: dict[tuple[str, ...], list[str]] = {
    ("demo",): ["demo"],
    ("run",): ["run"],
    ("backtest",): ["backtest", "--no-charts"],
    ("evaluate",): ["evaluate", "--no-charts"],
    ("data", "download"): ["data", "download", "--since", "2024-01-01"],
    ("data", "import"): ["data", "import", "BTC_USDT-1h.csv"],
    ("data", "list"): ["data", "list"],
    ("data", "check"): ["data", "check"],
    ("data", "markets"): ["data", "markets"],
    ("models", "train"): ["models", "train", "--data", "BTC_USDT-1h.csv"],
    ("models", "list"): ["models", "list"],
    ("models", "show"): ["models", "show", "xgb-20240101T000000Z-00000000"],
    ("models", "promote"): ["models", "promote", "xgb-20240101T000000Z-00000000"],
    ("models", "rollback"): ["models", "rollback", "xgb"],
    ("models", "prune"): ["models", "prune", "--dry-run"],
    ("models", "retrain"): ["models", "retrain"],
    ("risk", "backtest"): ["risk", "backtest"],
    ("risk", "show"): ["risk", "show"],
    ("mode", "show"): ["mode", "show"],
    ("mode", "set"): ["mode", "set", "PRESERVATION", "--for", "4h"],
    ("mode", "auto"): ["mode", "auto"],
    ("policy", "show"): ["policy", "show"],
    ("policy", "history"): ["policy", "history"],
    ("config", "show"): ["config", "show"],
    ("db", "upgrade"): ["db", "upgrade"],
    ("state", "show"): ["state", "show"],
    ("state", "halt"): ["state", "halt"],
    ("state", "reduce"): ["state", "reduce"],
    ("state", "resume"): ["state", "resume"],
}


def test_every_command_is_in_the_settings_matrix() -> None:
    commands = _command_paths(typer.main.get_command(app))
    groups = {path[:-1] for path in commands if path}
    assert set(ARGS) == commands - groups - {()}


def _one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


def _latin1(folder: Path) -> Path:
    env = folder / "latin1.env"
    env.write_bytes("# réglages\nQT__TRADING__TIMEFRAME=1h\n".encode("latin-1"))
    return env


@pytest.mark.parametrize("command", sorted(ARGS), ids=" ".join)
def test_an_env_file_that_cannot_be_read_is_one_line_for_every_command(
    cli: Cli, tmp_path: Path, command: tuple[str, ...]
) -> None:
    folder = tmp_path / "a-folder.env"
    folder.mkdir()
    cases = [
        (
            _latin1(tmp_path),
            f"{tmp_path / 'latin1.env'} is not UTF-8 text (byte 0xe9 on line 1): save it as UTF-8",
        ),
        (folder, f"env file {folder} is a folder, not a file"),
        (UNREADABLE, f"cannot read the env file {UNREADABLE}: Input/output error"),
    ]
    for env_file, says in cases:
        result = cli(*ARGS[command], "--env-file", str(env_file))
        assert "Traceback" not in result.output, (env_file, result.output)
        assert result.exit_code == 2, (env_file, result.output, result.exception)
        assert _one_line(result.stderr) == f"config error: {says}", env_file


def test_a_dot_env_in_latin_1_is_one_line(cli: Cli) -> None:
    _latin1(Path.cwd()).rename(".env")  # the one read without --env-file
    result = cli("data", "list")
    assert result.exit_code == 2, (result.output, result.exception)
    assert _one_line(result.stderr) == (
        "config error: .env is not UTF-8 text (byte 0xe9 on line 1): save it as UTF-8"
    )


# Commands that keep files in the data folder: their database, the demo's, the log, reports
# (data markets reads the database only if it is there).
NO_DATA_FOLDER = {("config", "show"), ("data", "download"), ("data", "markets")}
USES_THE_DATA_FOLDER = sorted(set(ARGS) - NO_DATA_FOLDER)


@pytest.mark.parametrize("command", USES_THE_DATA_FOLDER, ids=" ".join)
def test_a_data_folder_that_cannot_be_made_is_one_line_naming_it(
    cli: Cli, tmp_path: Path, offline_dns: None, command: tuple[str, ...]
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder\n")
    write_csv(Path("BTC_USDT-1h.csv"), candles("BTC/USDT", 300))  # for import and backtest
    with_data = command in {("backtest",), ("evaluate",)}
    args = ARGS[command] + (["--data", "BTC_USDT-1h.csv"] if with_data else [])
    for data_dir in (a_file, NOT_CREATABLE, a_file / "deeper"):
        result = cli(*args, QT__APP__DATA_DIR=str(data_dir), **TINY_DEMO)
        assert "Traceback" not in result.output, (data_dir, result.output)
        assert result.exit_code == 2, (data_dir, result.output, result.exception)
        assert str(data_dir) in _one_line(result.stderr), data_dir


def test_a_database_folder_that_cannot_be_made_is_one_line_naming_it(cli: Cli) -> None:
    url = f"sqlite+aiosqlite:///{NOT_CREATABLE}/qt.sqlite"
    result = cli("state", "show", QT__DATABASE__URL=url)
    assert result.exit_code == 2, (result.output, result.exception)
    assert f"cannot create the folder {NOT_CREATABLE} of the database" in flat(result.stderr)


def test_config_show_needs_no_data_folder(cli: Cli, tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder\n")
    result = cli("config", "show", QT__APP__DATA_DIR=str(a_file))
    assert result.exit_code == 0, result.output  # it shows the settings, it writes nothing
