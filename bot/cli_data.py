"""``qt data``: download, import, list and check candles in the database."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Protocol

import typer
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from bot.cli_common import (
    EnvFileOpt,
    console,
    load_or_exit,
    parse_day,
    print_plain,
    run_or_exit,
    wide_console,
)
from core.domain.enums import CandleMarket
from core.errors import DataError, QTError

if TYPE_CHECKING:
    from core.config import Settings
    from core.ports import CandleRepo, MarketData, SeriesInfo

    class MarketDataClient(MarketData, Protocol):
        """Market data with a connection to close."""

        async def close(self) -> None:
            """Release the connection."""
            ...


data_app = typer.Typer(help="Download, import, list and check candle data.", no_args_is_help=True)


def _symbols(value: str) -> list[str]:
    symbols = [s.strip() for s in value.split(",") if s.strip()]
    bad = [s for s in symbols if "/" not in s]
    if not symbols or bad:
        raise typer.BadParameter(
            f"expected symbols like BTC/USDT,ETH/USDT, received {value!r}", param_hint="--symbols"
        )
    return symbols


def make_market_data(settings: Settings, exchange_name: str) -> MarketDataClient:
    """Build the download client (the seam tests use to reach a local fake exchange)."""
    from bot.modes import ccxt_market_data

    return ccxt_market_data(settings, exchange_name)


@data_app.command("download")
def download(
    symbols: Annotated[
        str | None, typer.Option(help="Comma-separated, e.g. BTC/USDT,ETH/USDT (default: config).")
    ] = None,
    exchange: Annotated[
        str | None, typer.Option(help="ccxt exchange id (default: config).")
    ] = None,
    timeframe: Annotated[str | None, typer.Option(help="e.g. 1h (default: config).")] = None,
    since: Annotated[str, typer.Option(help="First day, UTC (e.g. 2022-01-01).")] = "2022-01-01",
    until: Annotated[
        str | None, typer.Option(help="End day, UTC, exclusive (default: now).")
    ] = None,
    env_file: EnvFileOpt = None,
) -> None:
    """Download public OHLCV candles via ccxt into the database (only what it lacks)."""
    settings = load_or_exit(env_file)
    name = exchange or settings.exchange.name
    tf = timeframe or settings.trading.timeframe
    from core.domain.market import timeframe_to_ms

    try:
        timeframe_to_ms(tf)  # before the network: a typo or 1M must not wait for the venue
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--timeframe") from e
    wanted = _symbols(symbols) if symbols else settings.trading.symbols
    since_ms = parse_day(since, "--since")
    now_ms = int(time.time() * 1000)
    until_ms = parse_day(until, "--until") if until else now_ms
    run_or_exit(lambda: _download(settings, name, wanted, tf, since_ms, until_ms, now_ms))


async def _download(
    settings: Settings,
    name: str,
    symbols: list[str],
    tf: str,
    since_ms: int,
    until_ms: int,
    now_ms: int,
) -> None:
    from bot.market_rules import download_rules
    from bot.modes import check_reachable
    from core.market.download import download_candles
    from storage import open_storage

    _check_range(since_ms, until_ms, now_ms=int(time.time() * 1000))  # before the network
    # Build the client first: an unknown exchange must fail before the database is opened.
    market_data = make_market_data(settings, name)
    try:
        await check_reachable(market_data, name, symbols[0], tf)  # offline: fail in seconds
    except QTError:
        await market_data.close()
        raise
    # The client fetches the configured market type's candles (ccxt's defaultType): store them
    # as that series, never into another market's.
    market = CandleMarket.traded(settings.exchange.market_type)
    storage = open_storage(settings.database_url, candle_market=market)
    await storage.start()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=console) as bar:
            for symbol in symbols:
                task = bar.add_task(f"{name} {market} {symbol} {tf}", total=None)

                def progress(done: int, total: int, task: TaskID = task) -> None:
                    bar.update(task, completed=done, total=total)

                result = await download_candles(
                    market_data,
                    storage.candles,
                    exchange=name,
                    symbol=symbol,
                    timeframe=tf,
                    since_ms=since_ms,
                    until_ms=until_ms,  # capped at now: a forming candle is never stored
                    now_ms=now_ms,
                    progress=progress,
                )
                note = " (the rest was stored already)" if result.resumed else ""
                bar.console.print(
                    f"{symbol}: {result.written} candles written in {result.pages} pages{note}, "
                    f"{len(result.gaps)} gaps, {sum(n for _, n in result.dropped)} rows dropped"
                )
        fetch_rules = getattr(market_data, "load_market_rules", None)
        if fetch_rules is not None:  # each symbol's tick, step and minimums, for backtests
            line = await download_rules(
                fetch_rules,
                storage.market_rules,
                settings=settings,
                exchange=name,
                symbols=symbols,
                now_ms=int(time.time() * 1000),
            )
            console.print(escape(line))
    finally:
        await market_data.close()
        await storage.stop()


def _check_range(since_ms: int, until_ms: int, *, now_ms: int) -> None:
    """Refuse a range that can hold no candle: one the venue would answer with nothing."""
    from core.market.validation import iso_ms

    def day(ts_ms: int) -> str:
        return iso_ms(ts_ms).removesuffix("T00:00:00Z")

    if since_ms >= now_ms:
        raise DataError(
            f"--since {day(since_ms)} is in the future: there are no candles to download yet"
        )
    if until_ms <= since_ms:
        raise DataError(
            f"--until {day(until_ms)} is not after --since {day(since_ms)}: the range holds "
            "no candles"
        )


@data_app.command("import")
def import_(
    files: Annotated[list[Path], typer.Argument(help="CSV(.gz), Freqtrade .json or .feather.")],
    exchange: Annotated[
        str | None, typer.Option(help="Store under this exchange name (default: config).")
    ] = None,
    symbol: Annotated[str | None, typer.Option(help="Override the symbol from the name.")] = None,
    timeframe: Annotated[str | None, typer.Option(help="Override the timeframe.")] = None,
    market: Annotated[
        CandleMarket | None,
        typer.Option(help="Override the market kind from the name (-futures, -mark, futures/)."),
    ] = None,
    repair: Annotated[
        bool, typer.Option(help="Drop invalid rows (and report them) instead of failing.")
    ] = False,
    sort: Annotated[
        bool, typer.Option(help="Put the rows in time order first (e.g. a newest-first file).")
    ] = False,
    replace: Annotated[
        bool, typer.Option(help="Overwrite stored candles that differ (refused otherwise).")
    ] = False,
    env_file: EnvFileOpt = None,
) -> None:
    """Import candle files; every file is validated first, and nothing is written if it fails.

    Spot, futures and mark-price candles are separate series (the market kind comes from the
    file name). Stored candles the files hold with other values are reported and left alone,
    and nothing is written, unless --replace is given.
    """
    from bot.data_import import ImportOptions, import_files

    settings = load_or_exit(env_file)
    options = ImportOptions(
        exchange=exchange or settings.exchange.name,
        symbol=symbol,
        timeframe=timeframe,
        market=market,
        repair=repair,
        sort=sort,
        replace=replace,
    )
    run_or_exit(lambda: import_files(settings, files, options))


@data_app.command("list")
def list_(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (one object per series) for scripts.")
    ] = False,
    env_file: EnvFileOpt = None,
) -> None:
    """List the candle series stored in the database."""
    settings = load_or_exit(env_file)
    run_or_exit(lambda: _list(settings, as_json))


async def _list(settings: Settings, as_json: bool) -> None:
    from core.market.validation import iso_ms
    from storage import open_storage

    storage = open_storage(settings.database_url)
    await storage.start()
    try:
        series = await storage.candles.list_series()
    finally:
        await storage.stop()
    if as_json:
        rows = [
            {
                "exchange": s.exchange,
                "market": s.market.value,
                "symbol": s.symbol,
                "timeframe": s.timeframe,
                "first": iso_ms(s.first_ms),
                "last": iso_ms(s.last_ms),
                "first_ms": s.first_ms,
                "last_ms": s.last_ms,
                "rows": s.rows,
            }
            for s in series
        ]
        print_plain(json.dumps(rows, indent=2))
        return
    if not series:
        console.print("no candles stored yet: try `qt data import FILE` or `qt data download`")
        return
    table = Table("exchange", "market", "symbol", "timeframe", "first", "last", "rows")
    for s in series:
        table.add_row(
            s.exchange,
            s.market,
            s.symbol,
            s.timeframe,
            iso_ms(s.first_ms),
            iso_ms(s.last_ms),
            str(s.rows),
        )
    # The table is as wide as its data, whatever the console's width (80 when piped): a
    # shortened timestamp is a wrong one. A narrow terminal wraps the lines instead. (A print
    # width above the console's is clamped by rich, hence a console of the table's width.)
    width = Measurement.get(console, console.options.update_width(10_000), table).maximum
    wide_console(max(width, console.width)).print(table, crop=False)


@data_app.command("check")
def check(
    files: Annotated[
        list[Path] | None, typer.Argument(help="Files to check (default: every stored series).")
    ] = None,
    repair: Annotated[
        bool,
        typer.Option(
            help="Delete the invalid stored candles (for files: report what import --repair "
            "would drop; a file is never changed)."
        ),
    ] = False,
    env_file: EnvFileOpt = None,
) -> None:
    """Validate candles and report gaps, for files or for everything stored."""
    settings = load_or_exit(env_file)
    ok = run_or_exit(lambda: _check(settings, files or [], repair))
    if not ok:
        raise typer.Exit(1)


async def _check(settings: Settings, files: list[Path], repair: bool) -> bool:
    from core.market.importers import read_candle_file
    from storage import open_storage

    ok = True
    now_ms = int(time.time() * 1000)
    for path in files:
        try:
            report = read_candle_file(path, now_ms=now_ms, repair=repair).report
        except DataError as e:
            console.print(f"[red]invalid[/red] {escape(str(e))}")
            ok = False
            continue
        console.print(escape("\n".join(report.summary_lines())))
    if files:
        return ok
    storage = open_storage(settings.database_url)
    await storage.start()
    try:
        infos = await storage.candles.list_series()
        if not infos:
            console.print("no candles stored yet")
        for info in infos:
            lines = await _check_stored(
                storage.candles.for_market(info.market), info, now_ms, repair
            )
            if lines is None:
                ok = False
            else:
                console.print(escape("\n".join(lines)))
    finally:
        await storage.stop()
    return ok


async def _check_stored(
    repo: CandleRepo, info: SeriesInfo, now_ms: int, repair: bool
) -> list[str] | None:
    """Return the report lines of one stored series, or print why it is invalid and return
    None. With ``repair`` its invalid rows are deleted (a database an earlier version wrote can
    hold rows today's rules refuse, such as a candle dated in the future)."""
    from core.errors import CandleValidationError
    from core.market.stored import check_stored, series_name
    from core.market.validation import validate_candles

    series = await repo.load(info.exchange, info.symbol, info.timeframe)
    where = series_name(info.exchange, info.market, info.symbol, info.timeframe)
    remedy = "`qt data check --repair` deletes the invalid rows and keeps the others."
    try:
        return validate_candles(series, source=where, now_ms=now_ms, remedy=remedy).summary_lines()
    except CandleValidationError as e:
        if not repair:
            console.print(f"[red]invalid[/red] {escape(str(e))}")
            return None
    except DataError as e:  # not a row's fault (a timeframe we cannot read): nothing to delete
        console.print(f"[red]invalid[/red] {escape(str(e))}")
        return None
    checked = check_stored(series, source=where, now_ms=now_ms)
    deleted = await repo.delete(info.exchange, info.symbol, info.timeframe, checked.dropped_ms)
    rules = ", ".join(f"{rule}={n}" for rule, n in checked.report.dropped)
    return [f"{where}: deleted {deleted} invalid stored candles ({rules})"] + [
        line for line in checked.report.summary_lines() if not line.startswith("dropped: ")
    ]
