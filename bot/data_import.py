"""``qt data import``: read and check every file, refuse conflicts, then write, or nothing.

Every file is read and validated before anything is written (a bad file loses nothing); the
conflict check and the writes hold the database's import lock (``bot.import_lock``); the writes
go through ``CandleImport``, so an import stopped midway (Ctrl-C, SIGTERM) or failing midway (a
full disk) takes back what it wrote and says so, instead of leaving part of a file stored.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.markup import escape

from bot.cli_common import console, err_console
from bot.import_lock import import_lock
from bot.stop_signals import StopRequest, stop_requests
from core.config import Settings
from core.domain.enums import CandleMarket
from core.errors import DataError, QTError
from core.market.candle_import import CandleImport, ImportStopped
from core.market.conflicts import CandleConflicts, differing, stored_conflicts
from core.market.importers import LoadedCandles, read_candle_file
from core.ports import CandleRepo


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportOptions:
    """The options of ``qt data import``."""

    exchange: str
    symbol: str | None
    timeframe: str | None
    market: CandleMarket | None
    repair: bool
    sort: bool
    replace: bool


async def import_files(settings: Settings, files: list[Path], opts: ImportOptions) -> None:
    """Import ``files``: all of them, or (refused, stopped, failed) none."""
    with stop_requests(asyncio.get_running_loop()) as stop:
        try:
            await _import(settings, files, opts, stop)
        except ImportStopped as stopped:
            taken = (
                f"the {stopped.written} candles it had written were removed again"
                if stopped.written
                else "it had written nothing yet"
            )
            err_console.print(
                f"stopped by {stop.name}: nothing was imported ({taken}); the database is as it was"
            )
            raise typer.Exit(stop.exit_code) from None


async def _import(
    settings: Settings, files: list[Path], opts: ImportOptions, stop: StopRequest
) -> None:
    now_ms = int(time.time() * 1000)
    loaded = []
    for path in files:
        # Off the loop's thread, as the demo reads its file: Arrow cancels a main-thread read
        # on a signal, which would turn a stop request into "bad file".
        item = await asyncio.to_thread(
            read_candle_file,
            path,
            symbol=opts.symbol,
            timeframe=opts.timeframe,
            market=opts.market,
            repair=opts.repair,
            sort=opts.sort,
            now_ms=now_ms,
        )
        loaded.append(item)
        if stop:
            raise ImportStopped(0)

    def waiting(holder: str) -> None:
        console.print(f"waiting for another import into this database ({holder}) to finish")

    async with import_lock(settings.database_url, on_wait=waiting, stop_requested=stop.__bool__):
        await _write(settings, files, loaded, opts, stop)


async def _write(
    settings: Settings,
    files: list[Path],
    loaded: list[LoadedCandles],
    opts: ImportOptions,
    stop: StopRequest,
) -> None:
    """Refuse the conflicts, or write every file (the caller holds the import lock)."""
    from storage import open_storage

    storage = open_storage(settings.database_url)
    await storage.start()
    try:
        conflicts = await _conflicts(storage.candles, opts.exchange, loaded)
        clashes = [
            _conflict_text(path, item, found, opts.exchange)
            for path, item, found in zip(files, loaded, conflicts, strict=True)
            if found.rows
        ]
        if clashes and not opts.replace:
            raise DataError(
                "\n".join(clashes) + "\nNothing was written. Pass --replace to overwrite them, "
                "or --market if a file is of another market than its name says."
            )
        writer = CandleImport(stop.__bool__)
        lines = []  # printed once every file is in: no line names an import taken back
        try:
            for path, item, found in zip(files, loaded, conflicts, strict=True):
                written = await writer.write(
                    storage.candles.for_market(item.market), opts.exchange, item.series
                )
                replaced = f", replacing {found.rows} that differed" if found.rows else ""
                lines.append(
                    f"[green]{escape(str(path))}[/green]: {written} candles -> {opts.exchange} "
                    f"{item.market}{replaced}"
                )
                lines.extend(f"  {escape(line)}" for line in item.report.summary_lines())
        except (ImportStopped, QTError) as failed:
            written = writer.written
            await _take_back(writer)
            if written and not isinstance(failed, ImportStopped):
                err_console.print(
                    f"nothing was imported: the {written} candles written were removed"
                )
            raise
        for line in lines:
            console.print(line)
    finally:
        await storage.stop()


async def _take_back(writer: CandleImport) -> None:
    """Undo the writes of an import that cannot finish; say so if even that fails."""
    written = writer.written
    try:
        await writer.undo()
    except QTError as e:
        raise DataError(
            f"the import could not finish, and {written} of its candles that were written "
            f"could not be removed again either ({e}); running the same import again "
            "completes it"
        ) from e


async def _conflicts(
    candles: CandleRepo, exchange: str, loaded: list[LoadedCandles]
) -> list[CandleConflicts]:
    """Return, per file, its candles stored (or in an earlier file) with other values."""
    found = []
    for k, item in enumerate(loaded):
        conflicts = await stored_conflicts(candles.for_market(item.market), exchange, item.series)
        for earlier in loaded[:k]:  # two files of one series in this import
            same = (earlier.market, earlier.series.symbol, earlier.series.timeframe)
            if same == (item.market, item.series.symbol, item.series.timeframe):
                conflicts = conflicts + differing(item.series, earlier.series)
        found.append(conflicts)
    return found


def _conflict_text(path: Path, item: LoadedCandles, found: CandleConflicts, exchange: str) -> str:
    from core.market.validation import iso_ms

    s = item.series
    first = "" if found.first_ms is None else f", the first at {iso_ms(found.first_ms)}"
    return (
        f"{path}: {found.rows} candles differ from those stored (or in an earlier file) for "
        f"{exchange} {item.market} {s.symbol} {s.timeframe}{first}"
    )
