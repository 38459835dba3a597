"""``qt data markets``: each symbol's market rules in force, and where they came from."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from bot import cli_data
from bot.cli_common import (
    EnvFileOpt,
    console,
    load_or_exit,
    print_plain,
    run_or_exit,
    wide_console,
)
from bot.cli_data import data_app
from core.domain.enums import CandleMarket
from core.errors import DataError

if TYPE_CHECKING:
    from core.config import Settings
    from core.domain.market import CandleSeries
    from core.domain.market_rules import RulesInForce


@data_app.command("markets")
def markets(
    symbols: Annotated[
        str | None,
        typer.Option(help="Comma-separated (default: the configured, overridden and stored)."),
    ] = None,
    data: Annotated[
        list[Path] | None,
        typer.Option(help="Candle files to infer rules from, as `qt backtest --data` does."),
    ] = None,
    fetch: Annotated[
        bool, typer.Option(help="Ask the venue now (public markets) and store its rules.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    env_file: EnvFileOpt = None,
) -> None:
    """Show each symbol's price tick, amount step, minimums and maximum leverage, and where
    they come from: venue, settings (QT__MARKET__SYMBOLS), stored, inferred or default."""
    settings = load_or_exit(env_file)
    wanted = [s.strip() for s in symbols.split(",") if s.strip()] if symbols else None
    run_or_exit(lambda: _markets(settings, wanted, data or [], fetch, as_json))


async def _markets(
    settings: Settings, wanted: list[str] | None, files: list[Path], fetch: bool, as_json: bool
) -> None:
    from bot.market_rules import plain, resolved, stored_rules

    bad = [s for s in wanted or [] if "/" not in s]
    if bad:  # a row of default rules for "BTCUSDT" would read as an answer
        raise DataError(
            f"--symbols: a symbol must be BASE/QUOTE like BTC/USDT, received {bad[0]!r}"
        )
    configured = [*settings.trading.symbols, *settings.market.symbols]
    if fetch:
        await _fetch(settings, settings.exchange.name, wanted or list(dict.fromkeys(configured)))
    stored = await stored_rules(settings)
    series = _read_files(files)
    shown = wanted or list(dict.fromkeys([*configured, *stored, *series]))
    if not files:
        series = await _stored_candles(settings, shown)
    rules = resolved(settings, shown, stored=stored, series=series)
    if as_json:
        print_plain(json.dumps([_row(s, held) for s, held in rules.items()], indent=2))
        return
    table = Table("symbol", "tick", "step", "min amount", "min notional", "max leverage", "from")
    for symbol, held in rules.items():
        r, where = held.rules, str(held.source) + (f" ({held.note})" if held.note else "")
        lev = "-" if r.max_leverage is None else str(r.max_leverage)
        table.add_row(
            symbol,
            plain(r.price_tick),
            plain(r.amount_step),
            plain(r.min_amount),
            plain(r.min_notional),
            lev,
            escape(where),
        )
    width = Measurement.get(console, console.options.update_width(10_000), table).maximum
    wide_console(max(width, console.width)).print(table, crop=False)
    console.print(
        f"{settings.exchange.name} {settings.exchange.market_type}; a venue's rules replace "
        "these when `qt run` starts (and every 6 h)"
    )


def _row(symbol: str, held: RulesInForce) -> dict[str, object]:
    from bot.market_rules import plain

    r = held.rules
    return {
        "symbol": symbol,
        "price_tick": plain(r.price_tick),
        "amount_step": plain(r.amount_step),
        "min_amount": plain(r.min_amount),
        "min_notional": plain(r.min_notional),
        "max_leverage": r.max_leverage,
        "source": str(held.source),
        "note": held.note,
    }


async def _fetch(settings: Settings, name: str, symbols: list[str]) -> None:
    from bot.market_rules import download_rules
    from storage import open_storage

    market_data = cli_data.make_market_data(settings, name)  # the seam tests replace
    try:
        fetch_rules = getattr(market_data, "load_market_rules", None)
        if fetch_rules is None:
            console.print(f"{name}: this client gives no market rules")
            return
        storage = open_storage(settings.database_url)
        await storage.start()
        try:
            line = await download_rules(
                fetch_rules,
                storage.market_rules,
                settings=settings,
                exchange=name,
                symbols=symbols,
                now_ms=int(time.time() * 1000),
            )
        finally:
            await storage.stop()
        console.print(escape(line))
    finally:
        await market_data.close()


def _read_files(files: list[Path]) -> dict[str, CandleSeries]:
    from bot.cli_backtest import one_file_per_symbol  # the backtest's rule: one per symbol
    from core.market.importers import read_candle_file

    now_ms = int(time.time() * 1000)
    loaded = [(f, read_candle_file(f, now_ms=now_ms).series) for f in files]
    return one_file_per_symbol([(f, s.symbol, s) for f, s in loaded])


async def _stored_candles(settings: Settings, symbols: list[str]) -> dict[str, CandleSeries]:
    """Return the stored candles of ``symbols`` (what a backtest without --data infers from);
    none when the database does not exist (it is not created to look)."""
    from bot.market_rules import database_exists
    from storage import open_storage

    if not await database_exists(settings.database_url):
        return {}
    market = CandleMarket.traded(settings.exchange.market_type)
    storage = open_storage(settings.database_url, candle_market=market)
    await storage.start()
    try:
        found = {}
        for symbol in symbols:
            series = await storage.candles.load(
                settings.exchange.name, symbol, settings.trading.timeframe
            )
            if len(series):
                found[symbol] = series
        return found
    finally:
        await storage.stop()
