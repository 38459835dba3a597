"""Every ``qt`` input that names candle data (a file, a folder, a range, a symbol) refuses data
it cannot use with one line and a failed status, never a traceback (issue 9 follow-up, item 12).

The matrix crosses each such input of each command (found from the commands' signatures, so
a new one must join it) with the ways data goes wrong: an empty file, a header-only file, one
candle, a range outside the data, a symbol nothing is known of, a folder without candle files.
Everything runs in-process and offline on synthetic files; the download cases that reach a
venue reach a fake one on localhost.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.core import TyperGroup
from typer.testing import Result

from bot import cli_data
from bot.cli import app
from core.exchange.ccxt import CcxtMarketData, make_ccxt_exchange
from core.market.synthetic import generate_candles
from tests.fakes_http import point_ccxt_at, set_minimal_markets
from tests.integration.test_cli import (
    CSV_HEADER,
    T0,
    Cli,
    H,
    candles,
    fake_binance_in_a_thread,
    write_csv,
)
from tests.integration.test_cli import cli as cli  # the fixture (re-exported: pytest finds it)

# Parameters that are not candle data: settings files (their own tests), the report folder
# (test_cli_errors) and the JSON copy of `qt risk backtest` (test_cli_risk).
NOT_DATA = {"env_file", "out", "json_path"}
RANGE_OR_SYMBOL = {"timerange", "since", "until", "symbols", "symbol"}
TINY_DEMO = {"QT__DEMO__CANDLES_PER_SECOND": "5000", "QT__DEMO__HISTORY_CANDLES": "60"}
PERP = {"QT__EXCHANGE__MARKET_TYPE": "perp"}


@dataclass(frozen=True)
class Files:
    """Synthetic inputs, one folder each (a file's name gives its symbol and timeframe)."""

    empty: Path  # 0 bytes
    header: Path  # the header and no candle
    one: Path  # one candle
    good: Path  # 300 1h candles from 2024-01-01
    unnamed: Path  # good candles in a file whose name gives no symbol
    folder: Path  # a folder without candle files
    detail_header: Path
    detail_elsewhere: Path  # 5m candles of 2023: none inside the backtest
    funding_empty: Path
    funding_header: Path
    funding_elsewhere: Path  # rates of 2023


def _file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def files(tmp_path: Path) -> Files:
    d = tmp_path / "in"
    year_before = T0 - 365 * 24 * H
    good = write_csv(_file(d / "good" / "BTC_USDT-1h.csv", ""), candles("BTC/USDT", 300))
    elsewhere = generate_candles("BTC/USDT", "5m", 24, seed=1, start_ms=year_before)
    folder = d / "folder"
    _file(folder / "notes.txt", "no candles here\n")
    return Files(
        empty=_file(d / "empty" / "BTC_USDT-1h.csv", ""),
        header=_file(d / "header" / "BTC_USDT-1h.csv", CSV_HEADER + "\n"),
        one=write_csv(_file(d / "one" / "BTC_USDT-1h.csv", ""), candles("BTC/USDT", 1)),
        good=good,
        unnamed=_file(d / "unnamed" / "candles.csv", good.read_text()),
        folder=folder,
        detail_header=_file(d / "detail-header" / "BTC_USDT-5m.csv", CSV_HEADER + "\n"),
        detail_elsewhere=write_csv(_file(d / "detail-2023" / "BTC_USDT-5m.csv", ""), elsewhere),
        funding_empty=_file(d / "funding-empty" / "BTC_USDT-funding.csv", ""),
        funding_header=_file(
            d / "funding-header" / "BTC_USDT-funding.csv", "timestamp,funding_rate\n"
        ),
        funding_elsewhere=_file(
            d / "funding-2023" / "BTC_USDT-funding.csv",
            "timestamp,funding_rate\n"
            + "".join(f"{year_before + k * 8 * H},0.0001\n" for k in range(9)),
        ),
    )


@dataclass(frozen=True)
class Case:
    """One command given one bad input: the input it covers and what the one line says."""

    covers: tuple[tuple[str, ...], str]  # (command path, parameter)
    args: Callable[[Files], list[str]]
    says: Callable[[Files], str]
    env: dict[str, str] | None = None


def _bt(*extra: str) -> list[str]:
    return ["backtest", "--no-charts", *extra]


BT, DEMO, DOWNLOAD, MARKETS = ("backtest",), ("demo",), ("data", "download"), ("data", "markets")
IMPORT, CHECK = ("data", "import"), ("data", "check")
TRAIN = ("models", "train")
RISK = ("risk", "backtest")
COVERS = "2024-01-01 00:00 to 2024-01-13 11:00"  # what the good file holds
CASES: dict[str, Case] = {
    # --- backtest: candles ---
    "backtest-empty": Case(
        (BT, "data"),
        lambda f: _bt("--data", str(f.empty)),
        lambda f: f"{f.empty}: the file is empty",
    ),
    "backtest-header-only": Case(
        (BT, "data"), lambda f: _bt("--data", str(f.header)), lambda f: f"{f.header}: no candles"
    ),
    "backtest-one-candle": Case(
        (BT, "data"),
        lambda f: _bt("--data", str(f.one)),
        lambda f: (
            f"BTC/USDT in {f.one} has 1 candle from 2024-01-01 00:00 to the end; a backtest "
            "needs at least 2"
        ),
    ),
    "backtest-unnamed": Case(
        (BT, "data"),
        lambda f: _bt("--data", str(f.unnamed)),
        lambda f: f"{f.unnamed}: give the symbol and timeframe",
    ),
    "backtest-folder": Case(
        (BT, "data"),
        lambda f: _bt("--data", str(f.folder)),  # --data takes folders of candle files
        lambda f: f"{f.folder} holds no 1h candle files like BTC_USDT-1h.csv.gz",
    ),
    "backtest-unknown-symbol": Case(  # no --data: the configured symbols' stored candles
        (BT, "data"),
        lambda f: _bt(),
        lambda f: "no 1h spot candles stored for binance DOGE/USDT",
        {"QT__TRADING__SYMBOLS": '["DOGE/USDT"]'},
    ),
    "backtest-range-after": Case(
        (BT, "timerange"),
        lambda f: _bt("--data", str(f.good), "--timerange", "20300101-"),
        lambda f: (
            f"BTC/USDT in {f.good} has no candles from 2030-01-01 00:00 to the end; its "
            f"candles cover {COVERS}"
        ),
    ),
    "backtest-range-before": Case(
        (BT, "timerange"),
        lambda f: _bt("--data", str(f.good), "--timerange", "20230101-20230201"),
        lambda f: (
            f"BTC/USDT in {f.good} has no candles from 2023-01-01 00:00 to 2023-02-01 "
            f"00:00; its candles cover {COVERS}"
        ),
    ),
    # --- backtest: detail candles ---
    "backtest-detail-empty": Case(
        (BT, "detail"),
        lambda f: _bt("--data", str(f.good), "--detail", str(f.empty)),
        lambda f: f"{f.empty}: the file is empty",
    ),
    "backtest-detail-header-only": Case(
        (BT, "detail"),
        lambda f: _bt("--data", str(f.good), "--detail", str(f.detail_header)),
        lambda f: f"{f.detail_header}: no candles",
    ),
    "backtest-detail-folder": Case(
        (BT, "detail"),
        lambda f: _bt("--data", str(f.good), "--detail", str(f.folder)),
        lambda f: f"{f.folder} is a folder, not a candle file",
    ),
    "backtest-detail-elsewhere": Case(
        (BT, "detail"),
        lambda f: _bt("--data", str(f.good), "--detail", str(f.detail_elsewhere)),
        lambda f: (
            f"BTC/USDT in {f.detail_elsewhere} has no candles from 2024-01-01 00:00 to the "
            "end; its candles cover 2023-01-01 00:00 to 2023-01-01 01:55"
        ),
    ),
    # --- backtest: funding rates ---
    "backtest-funding-empty": Case(
        (BT, "funding"),
        lambda f: _bt("--data", str(f.good), "--funding", str(f.funding_empty)),
        lambda f: f"{f.funding_empty}: expected columns timestamp,funding_rate",
        PERP,
    ),
    "backtest-funding-header-only": Case(
        (BT, "funding"),
        lambda f: _bt("--data", str(f.good), "--funding", str(f.funding_header)),
        lambda f: f"{f.funding_header}: no funding rows",
        PERP,
    ),
    "backtest-funding-folder": Case(
        (BT, "funding"),
        lambda f: _bt("--data", str(f.good), "--funding", str(f.folder)),
        lambda f: f"{f.folder} is a folder, not a funding file",
        PERP,
    ),
    "backtest-funding-elsewhere": Case(
        (BT, "funding"),
        lambda f: _bt("--data", str(f.good), "--funding", str(f.funding_elsewhere)),
        lambda f: (
            f"BTC/USDT in {f.funding_elsewhere} has no funding times from 2024-01-01 00:00 "
            "to the end; its rates cover 2023-01-01 00:00 to 2023-01-03 16:00"
        ),
        PERP,
    ),
    # --- demo ---
    "demo-empty": Case(
        (DEMO, "data"),
        lambda f: ["demo", "--data", str(f.empty)],
        lambda f: f"{f.empty}: the file is empty",
        TINY_DEMO,
    ),
    "demo-header-only": Case(
        (DEMO, "data"),
        lambda f: ["demo", "--data", str(f.header)],
        lambda f: f"{f.header}: no candles",
        TINY_DEMO,
    ),
    "demo-one-candle": Case(
        (DEMO, "data"),
        lambda f: ["demo", "--data", str(f.one)],
        lambda f: f"{f.one} has 1 candles; the demo needs more than QT__DEMO__HISTORY_CANDLES=60",
        TINY_DEMO,
    ),
    "demo-unnamed": Case(
        (DEMO, "data"),
        lambda f: ["demo", "--data", str(f.unnamed)],
        lambda f: f"{f.unnamed}: give the symbol and timeframe",
        TINY_DEMO,
    ),
    "demo-folder": Case(
        (DEMO, "data"),
        lambda f: ["demo", "--data", str(f.folder)],
        lambda f: f"{f.folder} is a folder, not a candle file",
        TINY_DEMO,
    ),
    # --- data import ---
    "import-empty": Case(
        (IMPORT, "files"),
        lambda f: ["data", "import", str(f.empty)],
        lambda f: f"{f.empty}: the file is empty",
    ),
    "import-header-only": Case(
        (IMPORT, "files"),
        lambda f: ["data", "import", str(f.header)],
        lambda f: f"{f.header}: no candles",
    ),
    "import-unnamed": Case(
        (IMPORT, "files"),
        lambda f: ["data", "import", str(f.unnamed)],
        lambda f: f"{f.unnamed}: give the symbol and timeframe",
    ),
    "import-folder": Case(
        (IMPORT, "files"),
        lambda f: ["data", "import", str(f.folder)],
        lambda f: f"{f.folder} is a folder, not a candle file",
    ),
    "import-symbol-without-quote": Case(
        (IMPORT, "symbol"),
        lambda f: ["data", "import", str(f.unnamed), "--symbol", "BTCUSDT", "--timeframe", "1h"],
        lambda f: f"{f.unnamed}: the symbol must be BASE/QUOTE like BTC/USDT, received 'BTCUSDT'",
    ),
    # --- data check (a report per file on stdout; a bad file is an "invalid" line, exit 1) ---
    "check-empty": Case(
        (CHECK, "files"),
        lambda f: ["data", "check", str(f.empty)],
        lambda f: f"invalid {f.empty}: the file is empty",
    ),
    "check-header-only": Case(
        (CHECK, "files"),
        lambda f: ["data", "check", str(f.header)],
        lambda f: f"invalid {f.header}: no candles",
    ),
    "check-unnamed": Case(
        (CHECK, "files"),
        lambda f: ["data", "check", str(f.unnamed)],
        lambda f: f"invalid {f.unnamed}: give the symbol and timeframe",
    ),
    "check-folder": Case(
        (CHECK, "files"),
        lambda f: ["data", "check", str(f.folder)],
        lambda f: f"invalid {f.folder} is a folder, not a candle file",
    ),
    # --- models train (before any worker is started, but for the rows the features leave) ---
    "train-empty": Case(
        (TRAIN, "data"),
        lambda f: ["models", "train", "--data", str(f.empty)],
        lambda f: f"{f.empty}: the file is empty",
    ),
    "train-header-only": Case(
        (TRAIN, "data"),
        lambda f: ["models", "train", "--data", str(f.header)],
        lambda f: f"{f.header}: no candles",
    ),
    "train-one-candle": Case(
        (TRAIN, "data"),
        lambda f: ["models", "train", "--data", str(f.one)],
        lambda f: "BTC/USDT: 0 usable rows (of 1 candles; the features need 200 to warm up)",
    ),
    "train-too-short": Case(
        (TRAIN, "data"),
        lambda f: ["models", "train", "--data", str(f.good)],
        lambda f: (
            "BTC/USDT: 98 usable rows (of 300 candles; the features need 200 to warm up); "
            "training needs at least 200"
        ),
    ),
    "train-unnamed": Case(
        (TRAIN, "data"),
        lambda f: ["models", "train", "--data", str(f.unnamed)],
        lambda f: f"{f.unnamed}: give the symbol and timeframe",
    ),
    "train-folder": Case(
        (TRAIN, "data"),
        lambda f: ["models", "train", "--data", str(f.folder)],
        lambda f: f"{f.folder} holds no 1h candle files like BTC_USDT-1h.csv.gz",
    ),
    "train-symbol-without-quote": Case(
        (TRAIN, "symbols"),
        lambda f: ["models", "train", "--data", str(f.good), "--symbols", "BTCUSDT"],
        lambda f: "--symbols: a symbol must be BASE/QUOTE like BTC/USDT, received 'BTCUSDT'",
    ),
    "train-unknown-symbol": Case(  # no --data: the stored candles of the symbols asked
        (TRAIN, "symbols"),
        lambda f: ["models", "train", "--symbols", "DOGE/USDT"],
        lambda f: "no 1h spot candles stored for binance DOGE/USDT",
    ),
    "train-until-before-the-data": Case(
        (TRAIN, "until"),
        lambda f: ["models", "train", "--data", str(f.good), "--until", "2023-06-01"],
        lambda f: f"--until 2023-06-01T00:00:00Z: BTC/USDT in {f.good} has no candles before it",
    ),
    # --- risk backtest (daily returns from the candles: one window and two days at least) ---
    "risk-empty": Case(
        (RISK, "data"),
        lambda f: ["risk", "backtest", "--data", str(f.empty)],
        lambda f: f"{f.empty}: the file is empty",
    ),
    "risk-header-only": Case(
        (RISK, "data"),
        lambda f: ["risk", "backtest", "--data", str(f.header)],
        lambda f: f"{f.header}: no candles",
    ),
    "risk-one-candle": Case(  # an hour of a day: no day's close at all
        (RISK, "data"),
        lambda f: ["risk", "backtest", "--data", str(f.one)],
        lambda f: "BTC/USDT: 0 day(s) with a close: no daily return",
    ),
    "risk-too-short": Case(  # 300 hours: 12 closed days
        (RISK, "data"),
        lambda f: ["risk", "backtest", "--data", str(f.good)],
        lambda f: "11 daily returns: a 250-day window needs at least 252",
    ),
    "risk-unnamed": Case(
        (RISK, "data"),
        lambda f: ["risk", "backtest", "--data", str(f.unnamed)],
        lambda f: f"{f.unnamed}: give the symbol and timeframe",
    ),
    "risk-folder": Case(
        (RISK, "data"),
        lambda f: ["risk", "backtest", "--data", str(f.folder)],
        lambda f: f"{f.folder} is a folder, not a candle file",
    ),
    "risk-symbol-not-in-the-data": Case(
        (RISK, "symbol"),
        lambda f: ["risk", "backtest", "--data", str(f.good), "--symbol", "ETH/USDT"],
        lambda f: "no candles for ETH/USDT",
    ),
    "risk-unknown-symbol": Case(  # no --data: the stored candles of the symbols asked
        (RISK, "symbol"),
        lambda f: ["risk", "backtest", "--symbol", "DOGE/USDT"],
        lambda f: "no 1h spot candles stored for binance DOGE/USDT",
    ),
    # --- data download (refused before the network, but for the symbol the venue must know) ---
    "download-since-in-the-future": Case(
        (DOWNLOAD, "since"),
        lambda f: ["data", "download", "--since", "2300-01-01"],
        lambda f: "--since 2300-01-01 is in the future: there are no candles to download yet",
    ),
    "download-until-before-since": Case(
        (DOWNLOAD, "until"),
        lambda f: ["data", "download", "--since", "2024-02-01", "--until", "2024-01-01"],
        lambda f: "--until 2024-01-01 is not after --since 2024-02-01: the range holds no candles",
    ),
    "download-unknown-symbol": Case(
        (DOWNLOAD, "symbols"),
        lambda f: ["data", "download", "--symbols", "DOGE/XYZ", "--since", "2024-01-01"],
        lambda f: "binance does not have market symbol DOGE/XYZ",
    ),
    # --- data markets (rules inferred from files, or shown for the symbols asked) ---
    "markets-empty": Case(
        (MARKETS, "data"),
        lambda f: ["data", "markets", "--data", str(f.empty)],
        lambda f: f"{f.empty}: the file is empty",
    ),
    "markets-header-only": Case(
        (MARKETS, "data"),
        lambda f: ["data", "markets", "--data", str(f.header)],
        lambda f: f"{f.header}: no candles",
    ),
    "markets-folder": Case(
        (MARKETS, "data"),
        lambda f: ["data", "markets", "--data", str(f.folder)],
        lambda f: f"{f.folder} is a folder, not a candle file",
    ),
    "markets-symbol-without-quote": Case(
        (MARKETS, "symbols"),
        lambda f: ["data", "markets", "--symbols", "BTCUSDT"],
        lambda f: "--symbols: a symbol must be BASE/QUOTE like BTC/USDT, received 'BTCUSDT'",
    ),
}

# `qt evaluate` takes the data options of `qt backtest` (the same loading and checks): each of
# the backtest's cases, run by evaluate, is refused alike before anything is trained.
CASES.update(
    {
        "evaluate" + name.removeprefix("backtest"): Case(
            (("evaluate",), case.covers[1]),
            (lambda args: lambda f: ["evaluate", *args(f)[1:]])(case.args),
            case.says,
            case.env,
        )
        for name, case in list(CASES.items())
        if case.covers[0] == BT
    }
)


def _inputs_of(command: typer.core.TyperCommand) -> set[str]:
    hints = typing.get_type_hints(command.callback)
    return {
        name
        for name, hint in hints.items()
        if name not in NOT_DATA and (name in RANGE_OR_SYMBOL or "pathlib.Path" in str(hint))
    }


def _commands(
    command: object, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], typer.core.TyperCommand]]:
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*prefix, name))
    else:
        assert isinstance(command, typer.core.TyperCommand)
        yield prefix, command


def test_every_data_input_of_every_command_is_in_the_matrix() -> None:
    inputs = {
        (path, name)
        for path, command in _commands(typer.main.get_command(app))
        for name in _inputs_of(command)
    }
    assert inputs == {case.covers for case in CASES.values()}


@pytest.fixture
def fake_venue(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``qt data download`` reaches a fake Binance on localhost that lists BTC/USDT only."""
    with fake_binance_in_a_thread({"BTCUSDT": candles("BTC/USDT", 24)}) as fake:

        def market_data(_settings: object, exchange_name: str) -> CcxtMarketData:
            exchange = make_ccxt_exchange(exchange_name, timeout_s=5)
            exchange.enableRateLimit = False
            point_ccxt_at(exchange, fake.base_url)
            set_minimal_markets(exchange)
            return CcxtMarketData(exchange)

        monkeypatch.setattr(cli_data, "make_market_data", market_data, raising=False)
        yield


def _message(result: Result) -> list[str]:
    """Return the lines the command printed for its refusal (data check's are on stdout)."""
    text = result.stderr if result.stderr.strip() else result.stdout
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_unusable_data_is_one_line_and_a_failed_status(
    cli: Cli, files: Files, request: pytest.FixtureRequest, case_id: str
) -> None:
    case = CASES[case_id]
    if case.covers[0] == DOWNLOAD:
        request.getfixturevalue("fake_venue")  # only these reach a venue, a local fake one
    result = cli(*case.args(files), **(case.env or {}))
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code != 0, result.output
    lines = _message(result)
    assert lines == [lines[0]], result.output  # one line
    assert case.says(files) in lines[0]
    assert "candles/s" not in result.stdout  # a backtest was refused before it ran


@pytest.mark.parametrize("command", [["data", "import"], ["data", "check"]])
def test_one_candle_is_a_valid_file_to_import_or_check(
    cli: Cli, files: Files, command: list[str]
) -> None:
    # Not a refusal: one candle is data (the newest hour, appended to what is stored), and
    # checking it is what `data check` is for. Only the commands that need more say so.
    result = cli(*command, str(files.one))
    assert result.exit_code == 0, result.output
    assert "1 rows" in result.stdout
