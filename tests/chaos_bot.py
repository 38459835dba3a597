"""The chaos harness's bot: ``qt run`` in live perp mode against the chaos venue.

The process is the one ``qt run`` builds (``bot.modes.build_run``, ``bot.runner.run_process``,
the settings from the environment: ``QT__TRADING__MODE=live``, perps, keys, confirmation),
with three things replaced: the ccxt clients point at the venue's URL (``CHAOS_VENUE_URL``,
markets loaded offline as the integration tests do), the clock is accelerated on the venue's
own mapping (``CHAOS_START_MS``, ``CHAOS_ANCHOR_WALL_MS``, ``CHAOS_SPEED``: this incarnation
starts at the market time of its launch), and the signals are a cadence that trades often
(an entry every ``CHAOS_EVERY`` candles, long and short in turn, and an exit signal half way),
so hundreds of orders happen in minutes. It trades every symbol of ``QT__TRADING__SYMBOLS``
(their candles close at the same instants); the first keeps the plain cadence, each other one
is shifted by 0, 1 or half a cadence, drawn anew every ``EPOCH_CADENCES`` cadences: its
entries sometimes land on the same candle as the first symbol's, sometimes one candle later
(while that trade is open), sometimes on the candle that trade exits. Knobs for the fault
scenarios: ``CHAOS_HEALTH_S`` runs the health job every so many wall seconds (instead of every
wall minute), ``CHAOS_BUSY_TIMEOUT_MS`` is how long a write waits for another process's SQLite
lock (instead of 10 s) before the database counts as unavailable, and ``CHAOS_DB_FAULT_FILE``
names a file the harness writes ``full`` or ``readonly`` into for a disk that is full or a
database that went read-only (SQLite itself then fails the writes: see ``faulty_begin``). Run:
``python -m tests.chaos_bot``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

import bot.app
import storage.db
from bot.app import TradingProcess
from bot.modes import build_run
from bot.runner import run_process
from core.clock import AcceleratedClock
from core.config import load_settings
from core.domain.enums import MarketType
from core.domain.market import CandleSeries, timeframe_to_ms
from core.exchange.ccxt import CcxtExchange, CcxtMarketData, make_ccxt_exchange
from core.signals.base import SignalFrame
from tests.fakes_fapi import binance_usdm, usdm_market
from tests.fakes_http import point_ccxt_at

EPOCH_CADENCES = 4  # a symbol's shift holds this many cadences, then is drawn again


@dataclass
class CadenceProvider:
    """Enter every ``every`` candles (long, then short, in turn); exit half way. A symbol after
    the first of ``symbols`` is shifted (``shifts``)."""

    every: int
    tf_ms: int
    symbols: tuple[str, ...] = ()
    name: str = "cadence"
    warmup_candles: int = 1

    def shifts(self, symbol: str, k: np.ndarray) -> np.ndarray:
        """Return the shift (candles) of ``symbol``'s cadence at candle numbers ``k``: 0 for
        the first symbol; else 0, 1 or ``every // 2``, drawn per epoch from a hash of the
        symbol and the epoch (the same in every incarnation of the process)."""
        if not self.symbols or symbol == self.symbols[0]:
            return np.zeros(len(k), dtype=np.int64)
        choices = (0, 1, self.every // 2)
        epochs = k // (self.every * EPOCH_CADENCES)
        drawn = {
            int(e): choices[zlib.crc32(f"{symbol}:{int(e)}".encode()) % len(choices)]
            for e in np.unique(epochs)
        }
        return np.array([drawn[int(e)] for e in epochs], dtype=np.int64)

    def compute(self, series: CandleSeries) -> SignalFrame:
        """Return the cadence's signals (each row reads only its own open time)."""
        if self.every <= 0:  # no entries, no exit signals (the harness's final incarnation)
            n = len(series)
            none = np.zeros(n, dtype=np.bool_)
            return SignalFrame(
                ts_ms=series.ts_ms,
                entry=np.zeros(n, dtype=np.int8),
                exit_long=none,
                exit_short=none,
                confidence=np.full(n, 0.6),
                atr=np.full(n, np.nan),
            )
        k = (series.ts_ms // self.tf_ms).astype(np.int64)
        k = k - self.shifts(series.symbol, k)
        phase, turn = k % self.every, (k // self.every) % 2
        n = len(series)
        return SignalFrame(
            ts_ms=series.ts_ms,
            entry=np.where(phase == 0, np.where(turn == 0, 1, -1), 0).astype(np.int8),
            exit_long=(phase == self.every // 2) & (turn == 0),
            exit_short=(phase == self.every // 2) & (turn == 1),
            confidence=np.full(n, 0.6),
            atr=np.full(n, np.nan),
        )


def chaos_clock() -> tuple[AcceleratedClock, float]:
    """Return the clock on the venue's mapping of wall to market time, and its speed."""
    start_ms = int(os.environ["CHAOS_START_MS"])
    anchor = int(os.environ["CHAOS_ANCHOR_WALL_MS"])
    speed = float(os.environ["CHAOS_SPEED"])
    wall = time.time_ns() // 1_000_000
    return AcceleratedClock(start_ms=start_ms + int((wall - anchor) * speed), speed=speed), speed


# SQLite's largest page count (its default cap): "no cap" again after a full disk
_NO_PAGE_CAP = 1_073_741_823


def faulty_begin(flag: Path, begin: Callable[[Any], None]) -> Callable[[Any], None]:
    """Return ``storage.db``'s transaction start with the database's own failures on demand:
    while ``flag`` says ``full``, SQLite may not grow the file past its size at the start of
    the transaction (``PRAGMA max_page_count``: writes that need a page fail SQLITE_FULL, as on
    a full disk); while it says ``readonly``, SQLite refuses every write (``PRAGMA
    query_only``: SQLITE_READONLY, as for a file that lost its write permission). The errors
    are SQLite's, raised where a real fault raises them; each connection is set once per
    change of the flag."""

    def on_begin(conn: Any) -> None:
        try:
            kind = flag.read_text().strip()
        except FileNotFoundError:
            kind = ""
        info = conn.connection.info  # the pooled connection's own, kept across checkouts
        if info.get("chaos_fault", "") != kind:
            conn.exec_driver_sql(f"PRAGMA query_only={'ON' if kind == 'readonly' else 'OFF'}")
            cap = _NO_PAGE_CAP
            if kind == "full":
                cap = conn.exec_driver_sql("PRAGMA page_count").scalar()
            conn.exec_driver_sql(f"PRAGMA max_page_count={cap}")
            info["chaos_fault"] = kind
        begin(conn)

    return on_begin


def fault_knobs() -> None:
    """Apply ``CHAOS_HEALTH_S``, ``CHAOS_BUSY_TIMEOUT_MS`` and ``CHAOS_DB_FAULT_FILE`` (see
    the module docstring)."""
    health_s = os.environ.get("CHAOS_HEALTH_S")
    if health_s:
        bot.app.JOBS = tuple(
            replace(job, every_market_s=float(health_s)) if job.job_id == "health" else job
            for job in bot.app.JOBS
        )
    busy_ms = os.environ.get("CHAOS_BUSY_TIMEOUT_MS")
    if busy_ms:
        storage.db.BUSY_TIMEOUT_MS = int(busy_ms)
    fault_file = os.environ.get("CHAOS_DB_FAULT_FILE")
    if fault_file:  # read by storage.db.create_engine when it builds the engine
        storage.db._on_begin = faulty_begin(Path(fault_file), storage.db._on_begin)


async def main() -> str:
    """Build and run the process until SIGTERM (or SIGKILL, which is the point)."""
    fault_knobs()
    url = os.environ["CHAOS_VENUE_URL"]
    settings = load_settings()
    timeout_s = settings.exchange.timeout_ms / 1000
    clock, speed = chaos_clock()
    client = make_ccxt_exchange("binance", market_type=MarketType.PERP, timeout_s=timeout_s)
    client.enableRateLimit = False
    point_ccxt_at(client, url)
    symbols = tuple(settings.trading.symbols)
    bases = tuple(symbol.split("/")[0] for symbol in symbols)
    client.set_markets([usdm_market(base) for base in bases])
    keyed = binance_usdm(url, bases)
    keyed.timeout = int(timeout_s * 1000)
    exchange = CcxtExchange(keyed, clock=clock, market_type=MarketType.PERP, symbols=symbols)
    tf_ms = timeframe_to_ms(settings.trading.timeframe)
    every = int(os.environ.get("CHAOS_EVERY", "6"))

    async def build() -> TradingProcess:
        process = await build_run(
            settings,
            market_data=CcxtMarketData(client),
            exchange=exchange,
            clock=clock,
            speed=speed,
        )
        process.engine.signals.provider = CadenceProvider(every=every, tf_ms=tf_ms, symbols=symbols)
        return process

    with open(os.devnull, "w") as quiet:
        return await run_process(build, console=Console(file=quiet))


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    print(asyncio.run(main()), flush=True)
