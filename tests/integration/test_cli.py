"""``qt`` end to end, in-process through typer's CliRunner: help, config, db, data, demo, run.

Every test gets its own data dir (``QT__APP__DATA_DIR``) and working directory, and no
inherited ``QT__*`` variable, so neither the developer's environment nor a ``./.env`` leaks in.
"""

from __future__ import annotations

import asyncio
import json
import logging
import logging.handlers
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.logging import RichHandler
from typer.core import TyperGroup
from typer.testing import CliRunner, Result

from bot import cli_data
from bot.cli import app
from bot.modes import PREFLIGHT_TIMEOUT_S
from core.domain.market import CandleSeries
from core.exchange.ccxt import CcxtMarketData, make_ccxt_exchange
from core.market.synthetic import generate_candles
from storage import open_storage
from storage.migrate import head_revision
from tests.fakes_http import FakeBinance, point_ccxt_at, set_minimal_markets

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
H = 3_600_000
CSV_HEADER = "timestamp,open,high,low,close,volume"
TINY_DEMO = {
    "QT__DEMO__CANDLES_PER_SECOND": "5000",
    "QT__DEMO__REPLAY_CANDLES": "30",
    "QT__DEMO__HISTORY_CANDLES": "60",
    "QT__STRATEGY__PROVIDER": "ema_rsi",  # too little history to train the demo's ensemble
}

# --- helpers and fixtures --------------------------------------------------------------------


def flat(text: str) -> str:
    """Collapse whitespace, so rich's line wrapping does not matter to assertions."""
    return " ".join(text.split())


def write_csv(
    path: Path,
    series: CandleSeries,
    *,
    drop_rows: range = range(0),
    high_below_close_at_row: int | None = None,
) -> Path:
    """Write ``series`` as our CSV; rows are 1-based data rows (the header not counted)."""
    lines = [CSV_HEADER]
    for i in range(len(series)):
        row = i + 1
        if row in drop_rows:
            continue
        high = float(series.high[i])
        if row == high_below_close_at_row:
            high = float(series.close[i]) * 0.9
        values = (series.open[i], high, series.low[i], series.close[i], series.volume[i])
        lines.append(",".join([str(int(series.ts_ms[i])), *(repr(float(v)) for v in values)]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def candles(symbol: str, n: int, *, seed: int = 3) -> CandleSeries:
    return generate_candles(symbol, "1h", n, seed=seed, start_ms=T0, start_price=100.0)


@dataclass
class Cli:
    """Invoke ``qt`` in-process with a private data dir."""

    runner: CliRunner
    data_dir: Path

    def __call__(self, *args: str, **env: str) -> Result:
        # A wide console keeps long messages (paths) on one line; flat() handles the rest.
        full_env = {"QT__APP__DATA_DIR": str(self.data_dir), "COLUMNS": "400", **env}
        return self.runner.invoke(app, list(args), env=full_env)

    @property
    def db_file(self) -> Path:
        return self.data_dir / "quantum_trader.sqlite"


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    for name in list(os.environ):
        if name.upper().startswith("QT__") or name in ("FORCE_COLOR", "TTY_COMPATIBLE"):
            monkeypatch.delenv(name)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)  # no ./.env of the developer is picked up
    root = logging.getLogger()
    level = root.level
    yield Cli(CliRunner(), tmp_path / "ud")
    # demo and run configure the root logger; close their handlers (the log file) again.
    for handler in list(root.handlers):
        if isinstance(handler, logging.handlers.RotatingFileHandler | RichHandler):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


@pytest.fixture
def offline_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Behave like a machine without internet: names other than localhost do not resolve."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host in ("localhost", "127.0.0.1", "::1", None):
            return real(host, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, f"offline: cannot resolve {host}")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def stored_series(db_file: Path) -> set[tuple[str, str, str, int]]:
    """Return (exchange, symbol, timeframe, rows) of every series stored in ``db_file``."""

    async def read() -> set[tuple[str, str, str, int]]:
        storage = open_storage(f"sqlite+aiosqlite:///{db_file}")
        await storage.start()
        try:
            return {
                (s.exchange, s.symbol, s.timeframe, s.rows)
                for s in await storage.candles.list_series()
            }
        finally:
            await storage.stop()

    return asyncio.run(read())


def table_rows(output: str) -> list[list[str]]:
    """Return the body cells of the rich table printed by ``qt data list``."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in output.splitlines()
        if line.startswith("│")
    ]


# --- help ------------------------------------------------------------------------------------

COMMANDS = [
    (),
    ("demo",),
    ("run",),
    ("backtest",),
    ("evaluate",),
    ("data",),
    ("data", "download"),
    ("data", "import"),
    ("data", "list"),
    ("data", "markets"),
    ("data", "check"),
    ("models",),
    ("models", "train"),
    ("models", "list"),
    ("models", "show"),
    ("models", "promote"),
    ("models", "rollback"),
    ("models", "prune"),
    ("models", "retrain"),
    ("risk",),
    ("risk", "backtest"),
    ("risk", "show"),
    ("mode",),
    ("mode", "show"),
    ("mode", "set"),
    ("mode", "auto"),
    ("policy",),
    ("policy", "show"),
    ("policy", "history"),
    ("config",),
    ("config", "show"),
    ("db",),
    ("db", "upgrade"),
    ("state",),
    ("state", "show"),
    ("state", "halt"),
    ("state", "reduce"),
    ("state", "resume"),
]


# typer vendors its own click, so commands are typed loosely here.
def _command_paths(command: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    paths = {prefix}
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            paths |= _command_paths(sub, (*prefix, name))
    return paths


def _command_at(path: tuple[str, ...]) -> Any:
    command: Any = typer.main.get_command(app)
    for name in path:
        assert isinstance(command, TyperGroup)
        command = command.commands[name]
    return command


def test_every_command_is_covered_by_the_help_test() -> None:
    assert _command_paths(typer.main.get_command(app)) == set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(("qt", *p)))
def test_help_works_and_describes_the_command(cli: Cli, path: tuple[str, ...]) -> None:
    help_text = (_command_at(path).help or "").strip()
    assert help_text, f"qt {' '.join(path)} has no help text"

    result = cli(*path, "--help")

    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout
    assert flat(help_text.splitlines()[0]) in flat(result.stdout)


# --- config ----------------------------------------------------------------------------------


def test_config_show_prints_json_with_secrets_redacted(cli: Cli) -> None:
    result = cli(
        "config",
        "show",
        QT__EXCHANGE__API_KEY="supersecret",
        QT__EXCHANGE__API_SECRET="alsosecret",
    )

    assert result.exit_code == 0, result.output
    assert "supersecret" not in result.output
    assert "alsosecret" not in result.output
    shown = json.loads(result.stdout)
    assert shown["exchange"]["api_key"] == "**********"
    assert shown["exchange"]["api_secret"] == "**********"
    assert shown["app"]["data_dir"] == str(cli.data_dir)
    assert shown["database"]["effective_url"] == f"sqlite+aiosqlite:///{cli.db_file}"
    assert shown["trading"]["mode"] == "paper"


def test_config_show_reads_dot_env_of_the_working_directory(cli: Cli) -> None:
    Path(".env").write_text("QT__TRADING__TIMEFRAME=4h\n", encoding="utf-8")

    result = cli("config", "show")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["trading"]["timeframe"] == "4h"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"QT__TRADING__MODE": "live"}, ["QT__TRADING__MODE=live requires QT__EXCHANGE__API_KEY"]),
        ({"QT__FOO__BAR": "1"}, ["unknown setting", "QT__FOO__BAR"]),
        ({"QT__DEMO__REPLAY_CANDLES": "many"}, ["QT__DEMO__REPLAY_CANDLES", "integer"]),
        ({"QT__TRADING__MAX_LEVERAGE": "5"}, ["QT__EXCHANGE__MARKET_TYPE=perp"]),
    ],
    ids=["live-without-keys", "unknown-variable", "not-an-integer", "leverage-on-spot"],
)
def test_bad_config_exits_2_with_a_short_clear_message(
    cli: Cli, env: dict[str, str], expected: list[str]
) -> None:
    result = cli("config", "show", **env)

    assert result.exit_code == 2
    assert result.stdout == ""
    message = result.stderr.strip()
    assert message.startswith("config error:")
    assert "Traceback" not in message
    assert len(message.splitlines()) <= 2  # "invalid settings:" plus the one broken rule
    for fragment in expected:
        assert fragment in message


def test_unknown_variable_in_an_env_file_names_the_file(cli: Cli, tmp_path: Path) -> None:
    env_file = tmp_path / "prod.env"
    env_file.write_text("QT__TRADING__TIMEFRAM=4h\n", encoding="utf-8")

    result = cli("config", "show", "--env-file", str(env_file))

    assert result.exit_code == 2
    assert f"unknown setting(s) in {env_file}: QT__TRADING__TIMEFRAM" in flat(result.stderr)


def test_missing_env_file_is_a_config_error(cli: Cli, tmp_path: Path) -> None:
    result = cli("config", "show", "--env-file", str(tmp_path / "nope.env"))

    assert result.exit_code == 2
    assert "nope.env does not exist" in flat(result.stderr)


# --- db --------------------------------------------------------------------------------------


def test_db_upgrade_creates_the_database_and_prints_the_revision(cli: Cli) -> None:
    assert not cli.db_file.exists()

    first = cli("db", "upgrade")
    again = cli("db", "upgrade")

    assert first.exit_code == 0, first.output
    assert cli.db_file.is_file()
    assert first.stdout.strip() == f"database at revision {head_revision()}"
    assert again.exit_code == 0, again.output
    assert again.stdout == first.stdout


# --- backtest ------------------------------------------------------------------------------


def test_backtest_of_a_file_writes_the_report_and_says_funding_is_not_modelled(
    cli: Cli, tmp_path: Path
) -> None:
    data = write_csv(tmp_path / "BTC_USDT-1h.csv", candles("BTC/USDT", 1500, seed=7))
    result = cli("backtest", "--data", str(data), "--no-charts", "--name", "t")
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert "1500 candles" in out and "Funding is not modelled" in out
    report = json.loads((cli.data_dir / "backtests" / "backtest-t.json").read_text())
    assert report["metrics"]["funding"] is None


def test_backtest_with_funding_needs_perps_and_settles_it(cli: Cli, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "BTC_USDT-1h.csv", candles("BTC/USDT", 1500, seed=7))
    rows = "".join(f"{T0 + k * 8 * H},0.0001\n" for k in range(1, 1500 // 8))
    funding = tmp_path / "BTC_USDT-funding.csv"
    funding.write_text("timestamp,funding_rate\n" + rows)
    args = ("backtest", "--data", str(data), "--funding", str(funding), "--no-charts")

    spot = cli(*args)
    assert spot.exit_code == 2
    assert "funding rates apply to perps" in flat(spot.stderr)

    perp = cli(*args, "--name", "p", QT__EXCHANGE__MARKET_TYPE="perp")
    assert perp.exit_code == 0, perp.output
    assert re.search(r"Funding settled [1-9]\d* time\(s\)", flat(perp.stdout))
    report = json.loads((cli.data_dir / "backtests" / "backtest-p.json").read_text())
    assert report["metrics"]["funding"] != 0


def test_backtest_refuses_two_candle_files_of_one_symbol_naming_both(
    cli: Cli, tmp_path: Path
) -> None:
    # Spot and futures files share a name; one used to replace the other without a word.
    def pair(timeframe: str, n: int) -> tuple[str, str]:
        paths = []
        for venue, seed in (("spot", 7), ("futures", 8)):
            (tmp_path / venue).mkdir(exist_ok=True)
            series = generate_candles("BTC/USDT", timeframe, n, seed=seed, start_ms=T0)
            paths.append(str(write_csv(tmp_path / venue / f"BTC_USDT-{timeframe}.csv", series)))
        return paths[0], paths[1]

    spot, perp = pair("1h", 300)
    spot_5m, perp_5m = pair("5m", 300)
    for args, named in (
        (["--data", spot, "--data", perp], (spot, perp)),
        (["--data", spot, "--detail", spot_5m, "--detail", perp_5m], (spot_5m, perp_5m)),
    ):
        result = cli("backtest", *args, "--no-charts")
        assert result.exit_code == 2, result.output
        err = flat(result.stderr)
        assert "BTC/USDT" in err and named[0] in err and named[1] in err
        assert not (cli.data_dir / "backtests").exists()


def test_backtest_refuses_two_funding_files_of_one_symbol_naming_both(
    cli: Cli, tmp_path: Path
) -> None:
    # Say a 2019-2023 and a 2024- export: the last one given used to replace the first.
    data = write_csv(tmp_path / "BTC_USDT-1h.csv", candles("BTC/USDT", 300, seed=7))
    files = []
    for part, times in (("a", range(1, 20)), ("b", range(20, 37))):
        (tmp_path / part).mkdir()
        path = tmp_path / part / "BTC_USDT-funding.csv"
        path.write_text(
            "timestamp,funding_rate\n" + "".join(f"{T0 + k * 8 * H},0.0001\n" for k in times)
        )
        files += ["--funding", str(path)]

    result = cli(
        "backtest", "--data", str(data), *files, "--no-charts", QT__EXCHANGE__MARKET_TYPE="perp"
    )

    assert result.exit_code == 2, result.output
    err = flat(result.stderr)
    assert "two funding files for BTC/USDT" in err
    assert files[1] in err and files[3] in err
    assert not (cli.data_dir / "backtests").exists()


# --- state ---------------------------------------------------------------------------------


def test_state_show_says_a_storage_halt_kept_beside_the_database_and_resume_answers_it(
    cli: Cli,
) -> None:
    from bot.halt_note import FileHaltNote
    from core.ports import KeptHalt

    assert "storage halt" not in cli("state", "show").stdout
    cli.db_file.parent.mkdir(parents=True, exist_ok=True)
    note = FileHaltNote(cli.db_file.with_name(cli.db_file.name + ".storage-halt"))
    note.write(KeptHalt(1_000, "cannot write the database: the disk is full", ""))
    shown = flat(cli("state", "show").stdout)
    assert "is ACTIVE" in shown  # the database's own state
    assert "a storage halt is kept in" in shown and "the disk is full" in shown
    assert "next start is HALTED unless resumed" in shown
    resumed = flat(cli("state", "resume").stdout)
    assert "answered by this resume" in resumed


def test_state_resume_does_not_claim_to_answer_a_kept_halt_from_later_than_it(cli: Cli) -> None:
    """The killed process's clock ran ahead (a drifting host): its halt is later than the
    operator's resume, which does not lift it at the next start; the resume must say so."""
    from bot.halt_note import FileHaltNote
    from core.clock import LiveClock, SimClock
    from core.domain.enums import TradingState
    from core.ports import KeptHalt
    from core.services.bus import EventBus
    from core.services.trading_state import TradingStateService

    cli.db_file.parent.mkdir(parents=True, exist_ok=True)
    note = FileHaltNote(cli.db_file.with_name(cli.db_file.name + ".storage-halt"))
    ahead_ms = LiveClock().now_ms() + 86_400_000
    note.write(KeptHalt(ahead_ms, "database is locked", ""))
    resumed = flat(cli("state", "resume").stdout)
    assert "answered by this resume" not in resumed
    assert "next start is HALTED" in resumed

    async def next_start() -> TradingState:
        storage = open_storage(f"sqlite+aiosqlite:///{cli.db_file}")
        await storage.start()
        try:
            svc = TradingStateService(storage.state, EventBus(), SimClock(ahead_ms), note=note)
            return await svc.current()
        finally:
            await storage.stop()

    assert asyncio.run(next_start()) is TradingState.HALTED  # what the resume said
    again = flat(cli("state", "resume").stdout)  # the halt now in the database: resumable
    assert "storage halt" not in again and "is ACTIVE" in flat(cli("state", "show").stdout)


def test_state_halt_persists_is_audited_and_resume_clears_it(cli: Cli) -> None:
    shown = cli("state", "show")
    assert shown.exit_code == 0, shown.output
    assert flat(shown.stdout).startswith("trading state is ACTIVE: orders allowed database: ")
    assert str(cli.db_file) in flat(shown.stdout)

    halted = cli("state", "halt", "--reason", "exchange incident")
    again = cli("state", "halt")
    assert halted.exit_code == again.exit_code == 0, halted.output + again.output
    assert "now HALTED" in halted.stdout and "reason: exchange incident" in halted.stdout
    assert "already HALTED" in again.stdout and "exchange incident" in again.stdout
    assert "HALTED" in cli("state", "show").stdout  # another process reads it from the db

    resumed = cli("state", "resume")
    assert "now ACTIVE" in resumed.stdout

    async def audit() -> list[tuple[str, str, str]]:
        storage = open_storage(f"sqlite+aiosqlite:///{cli.db_file}")
        await storage.start()
        try:
            events = await storage.events.list_events("trading.")
        finally:
            await storage.stop()
        return [(e.payload["current"], e.payload["reason"], e.payload["actor"]) for e in events]

    assert asyncio.run(audit()) == [
        ("halted", "exchange incident", "cli"),
        ("active", "resumed from the command line", "cli"),
    ]


# --- data import / list / check --------------------------------------------------------------


def test_import_then_list_then_check_the_stored_series(cli: Cli, tmp_path: Path) -> None:
    # 48 hourly candles with data rows 11-13 missing: 45 rows and one 3-candle gap.
    csv = write_csv(tmp_path / "BTC_USDT-1h.csv", candles("BTC/USDT", 48), drop_rows=range(11, 14))

    imported = cli("data", "import", str(csv))
    listed = cli("data", "list")
    checked = cli("data", "check")

    assert imported.exit_code == 0, imported.output
    assert f"{csv}: 45 candles -> binance" in flat(imported.stdout)
    assert "gaps: 1 segments, 3 missing candles" in imported.stdout
    assert listed.exit_code == 0, listed.output
    assert table_rows(listed.stdout) == [
        ["binance", "spot", "BTC/USDT", "1h", "2024-01-01T00:00:00Z", "2024-01-02T23:00:00Z", "45"]
    ]
    assert checked.exit_code == 0, checked.output
    assert "binance spot BTC/USDT 1h: BTC/USDT 1h, 45 rows" in checked.stdout
    assert "gaps: 1 segments, 3 missing candles" in checked.stdout
    assert "largest gap: 3 missing (2024-01-01T09:00:00Z -> 2024-01-01T13:00:00Z)" in (
        checked.stdout
    )


def test_import_honours_exchange_symbol_and_timeframe_options(cli: Cli, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "prices.csv", candles("SOL/USDT", 24))

    result = cli(
        "data", "import", str(csv), "--exchange", "kraken", "--symbol", "SOL/USDT",
        "--timeframe", "1h",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert stored_series(cli.db_file) == {("kraken", "SOL/USDT", "1h", 24)}


def test_import_without_a_symbol_in_the_name_asks_for_one(cli: Cli, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "prices.csv", candles("SOL/USDT", 24))

    result = cli("data", "import", str(csv))

    assert result.exit_code == 2
    assert f"{csv}: give the symbol and timeframe" in flat(result.stderr)
    assert not cli.db_file.exists()


def test_bad_row_fails_the_import_naming_file_row_and_rule_and_writes_nothing(
    cli: Cli, tmp_path: Path
) -> None:
    bad = write_csv(
        tmp_path / "ETH_USDT-1h.csv", candles("ETH/USDT", 30), high_below_close_at_row=5
    )

    result = cli("data", "import", str(bad))

    assert result.exit_code == 2
    message = flat(result.stderr)
    assert message.startswith(f"error: {bad}: 1 of 30 candle rows are invalid")
    assert "high_below_open_close" in message
    assert "first at row 5," in message
    assert "Traceback" not in result.output
    assert not cli.db_file.exists()  # validation happens before the database is even opened
    listed = cli("data", "list")
    assert listed.exit_code == 0
    assert "no candles stored yet" in listed.stdout


def test_bad_file_leaves_earlier_series_unchanged(cli: Cli, tmp_path: Path) -> None:
    good = write_csv(tmp_path / "BTC_USDT-1h.csv", candles("BTC/USDT", 40))
    assert cli("data", "import", str(good)).exit_code == 0
    before = stored_series(cli.db_file)
    bad = write_csv(
        tmp_path / "ETH_USDT-1h.csv", candles("ETH/USDT", 30), high_below_close_at_row=5
    )

    result = cli("data", "import", str(bad))

    assert result.exit_code == 2
    assert stored_series(cli.db_file) == before == {("binance", "BTC/USDT", "1h", 40)}


def test_import_of_two_files_where_the_second_is_bad_writes_neither(
    cli: Cli, tmp_path: Path
) -> None:
    good = write_csv(tmp_path / "BTC_USDT-1h.csv", candles("BTC/USDT", 40))
    bad = write_csv(
        tmp_path / "ETH_USDT-1h.csv", candles("ETH/USDT", 30), high_below_close_at_row=5
    )

    result = cli("data", "import", str(good), str(bad))

    assert result.exit_code == 2
    assert str(bad) in flat(result.stderr)
    assert str(good) not in result.output
    listed = cli("data", "list")
    assert "no candles stored yet" in listed.stdout
    assert table_rows(listed.stdout) == []


def test_repair_imports_the_good_rows_and_reports_the_dropped_count(
    cli: Cli, tmp_path: Path
) -> None:
    bad = write_csv(
        tmp_path / "ETH_USDT-1h.csv", candles("ETH/USDT", 30), high_below_close_at_row=5
    )

    result = cli("data", "import", "--repair", str(bad))

    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert f"{bad}: 29 candles -> binance" in out
    assert "dropped: 1 invalid rows (high_below_open_close=1)" in out
    assert "gaps: 1 segments, 1 missing candles" in out  # the dropped row leaves a hole
    assert stored_series(cli.db_file) == {("binance", "ETH/USDT", "1h", 29)}


def test_paths_with_brackets_are_printed_verbatim(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "data[v2]"
    folder.mkdir()
    bad = write_csv(folder / "ETH_USDT-1h.csv", candles("ETH/USDT", 10), high_below_close_at_row=5)

    result = cli("data", "import", str(bad))

    assert result.exit_code == 2
    assert str(bad) in flat(result.stderr)  # not eaten as rich markup


def test_check_of_a_good_file_exits_0_and_reports_gaps(cli: Cli, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "BTC_USDT-1h.csv", candles("BTC/USDT", 48), drop_rows=range(20, 22))

    result = cli("data", "check", str(csv))

    assert result.exit_code == 0, result.output
    assert f"{csv}: BTC/USDT 1h, 46 rows" in flat(result.stdout)
    assert "gaps: 1 segments, 2 missing candles" in result.stdout
    assert not cli.db_file.exists()  # checking files never touches the database


def test_check_of_a_bad_file_exits_1_and_names_the_rule(cli: Cli, tmp_path: Path) -> None:
    good = write_csv(tmp_path / "BTC_USDT-1h.csv", candles("BTC/USDT", 20))
    bad = write_csv(
        tmp_path / "ETH_USDT-1h.csv", candles("ETH/USDT", 30), high_below_close_at_row=5
    )
    missing = tmp_path / "SOL_USDT-1h.csv"

    result = cli("data", "check", str(good), str(bad), str(missing))

    assert result.exit_code == 1
    out = flat(result.stdout)
    assert f"{good}: BTC/USDT 1h, 20 rows" in out  # the good file is still reported
    assert f"invalid {bad}: 1 of 30 candle rows are invalid" in out
    assert "high_below_open_close" in out and "first at row 5," in out
    assert f"invalid {missing}: no such candle file" in out


def test_check_with_nothing_stored_says_so(cli: Cli) -> None:
    result = cli("data", "check")

    assert result.exit_code == 0, result.output
    assert "no candles stored yet" in result.stdout


# --- data download ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--symbols", "BTCUSDT"], "expected symbols like BTC/USDT,ETH/USDT, received 'BTCUSDT'"),
        (["--since", "yesterday"], "'yesterday' is not a date like 2022-01-01"),
        (["--until", "soon"], "'soon' is not a date like 2022-01-01"),
        (["--timeframe", "1M"], "monthly candles (1M) are not supported"),
    ],
    ids=["symbol-without-slash", "bad-since", "bad-until", "monthly"],
)
def test_download_rejects_bad_arguments_before_touching_anything(
    cli: Cli, args: list[str], expected: str
) -> None:
    result = cli("data", "download", *args)

    assert result.exit_code == 2
    assert expected in flat(result.stderr)
    assert not cli.db_file.exists()


def test_download_from_an_unknown_exchange_is_a_clear_error(cli: Cli) -> None:
    result = cli(
        "data", "download", "--exchange", "nosuchex", "--since", "2024-01-01",
        "--until", "2024-01-02",
    )  # fmt: skip

    assert result.exit_code == 2
    assert "unknown exchange 'nosuchex'" in flat(result.stderr)
    assert not cli.db_file.exists()


@contextmanager
def fake_binance_in_a_thread(series_by_id: dict[str, CandleSeries]) -> Iterator[FakeBinance]:
    """Serve the fake Binance from its own loop: the CLI blocks this thread in asyncio.run."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-binance", daemon=True)
    thread.start()
    fake = FakeBinance(series_by_id)
    try:
        asyncio.run_coroutine_threadsafe(fake.start(), loop).result(timeout=5)
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


@pytest.mark.skipif(
    not hasattr(cli_data, "make_market_data"),
    reason="no seam to point `qt data download` at the local fake Binance: the CLI builds its "
    "ccxt client inline with make_ccxt_exchange (wanted: a module-level hook "
    "bot.cli_data.make_market_data(settings, exchange_name) -> CcxtMarketData)",
)
def test_download_from_the_fake_binance_then_resume(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    series = candles("BTC/USDT", 60)
    with fake_binance_in_a_thread({"BTCUSDT": series}) as fake:

        def market_data(settings: object, exchange_name: str) -> CcxtMarketData:
            exchange = make_ccxt_exchange(exchange_name, timeout_s=5)
            exchange.enableRateLimit = False
            point_ccxt_at(exchange, fake.base_url)
            set_minimal_markets(exchange)
            return CcxtMarketData(exchange)

        monkeypatch.setattr(cli_data, "make_market_data", market_data, raising=False)
        args = ["--symbols", "BTC/USDT", "--timeframe", "1h", "--since", "2024-01-01"]
        first = cli("data", "download", *args, "--until", "2024-01-02")
        second = cli("data", "download", *args, "--until", "2024-01-03")

    assert first.exit_code == 0, first.output
    assert "BTC/USDT: 24 candles written in 1 pages, 0 gaps, 0 rows dropped" in first.stdout
    assert second.exit_code == 0, second.output
    # From the newest stored candle on: had it been stored while forming, it is final now.
    assert "BTC/USDT: 25 candles written in 1 pages (the rest was stored already)" in second.stdout
    assert int(fake.requests[-1]["startTime"]) == T0 + 23 * H
    assert stored_series(cli.db_file) == {("binance", "BTC/USDT", "1h", 48)}


# --- demo ------------------------------------------------------------------------------------


def test_demo_replays_a_synthetic_market_to_the_end(cli: Cli) -> None:
    result = cli("demo", **TINY_DEMO)

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "stopped (feed ended)" in out
    assert re.findall(r"candles (\d+)", out)[-1] == "60"  # 30 replayed for each of 2 symbols
    demo_db = cli.data_dir / "demo.sqlite"
    assert f"database: sqlite+aiosqlite:///{demo_db}" in flat(out)
    assert stored_series(demo_db) == {
        ("synthetic", "BTC/USDT", "1h", 90),
        ("synthetic", "ETH/USDT", "1h", 90),
    }
    assert not cli.db_file.exists()  # the demo never touches the run database


def test_demo_replays_a_candle_file(cli: Cli, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "SOL_USDT-1h.csv", candles("SOL/USDT", 80))

    result = cli("demo", "--data", str(csv), **TINY_DEMO)

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "stopped (feed ended)" in out
    assert "SOL/USDT" in out and "BTC/USDT" not in out
    # 80 candles: the first 60 are history, the other 20 are replayed.
    assert re.findall(r"candles (\d+)", out)[-1] == "20"
    assert stored_series(cli.data_dir / "demo.sqlite") == {("file", "SOL/USDT", "1h", 80)}


def test_demo_with_too_short_a_file_exits_2(cli: Cli, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "SOL_USDT-1h.csv", candles("SOL/USDT", 40))

    result = cli("demo", "--data", str(csv), **TINY_DEMO)

    assert result.exit_code == 2
    message = flat(result.stderr)
    assert f"{csv} has 40 candles" in message
    assert "QT__DEMO__HISTORY_CANDLES=60" in message


# --- run -------------------------------------------------------------------------------------


def test_run_offline_exits_2_and_suggests_the_demo(cli: Cli, offline_dns: None) -> None:
    started = time.monotonic()
    result = cli("run")
    elapsed_s = time.monotonic() - started

    assert result.exit_code == 2, result.output
    message = flat(result.stderr)
    assert "cannot reach binance for BTC/USDT market data" in message
    assert "`qt demo`" in message
    assert "Traceback" not in result.output
    assert elapsed_s < PREFLIGHT_TIMEOUT_S


def test_run_on_a_sandbox_ccxt_has_not_is_one_line(cli: Cli, offline_dns: None) -> None:
    result = cli("run", QT__EXCHANGE__NAME="kraken", QT__EXCHANGE__SANDBOX="true")

    assert result.exit_code == 2, (result.output, result.exception)
    assert "kraken has no testnet in ccxt" in flat(result.stderr)
    assert "Traceback" not in result.output
    assert not cli.db_file.exists()  # refused before anything started


LIVE = {
    "QT__TRADING__MODE": "live",
    "QT__EXCHANGE__API_KEY": "supersecret",
    "QT__EXCHANGE__API_SECRET": "alsosecret",
    "QT__TRADING__LIVE_CONFIRMATION": "I accept real-money risk",
}


def test_live_on_spot_is_refused_without_leaking_keys(cli: Cli) -> None:
    result = cli("run", **LIVE)

    assert result.exit_code == 2
    assert "MARKET_TYPE=perp" in flat(result.stderr)
    assert "supersecret" not in result.output and "alsosecret" not in result.output


def test_live_offline_exits_2_before_any_order_without_leaking_keys(
    cli: Cli, offline_dns: None
) -> None:
    result = cli("run", **LIVE, QT__EXCHANGE__MARKET_TYPE="perp")

    assert result.exit_code == 2, result.output
    assert "cannot reach binance" in flat(result.stderr)
    assert "supersecret" not in result.output and "alsosecret" not in result.output
    assert not cli.db_file.exists()  # nothing started


def test_download_offline_fails_fast_and_writes_nothing(
    cli: Cli, offline_dns: None, tmp_path: Path
) -> None:
    started = time.monotonic()
    result = cli("data", "download", "--symbols", "ETH/USDT", "--since", "2024-01-01")
    elapsed_s = time.monotonic() - started

    assert result.exit_code == 2, result.output
    assert "cannot reach binance for ETH/USDT market data" in flat(result.stderr)
    assert elapsed_s < PREFLIGHT_TIMEOUT_S
    assert not list(tmp_path.rglob("*.sqlite"))  # nothing was opened or written
