"""Build the process for each mode: the only place that picks clock, feed and exchange.

- demo: accelerated market time, replay of a synthetic market or a candle file, paper
  exchange, its own fresh database ``<data_dir>/demo.sqlite``, locked while the demo runs.
- run: wall clock, ccxt public OHLCV polling, the configured database, and the paper exchange
  or, with QT__TRADING__MODE=live (USDT-M perps, keys, confirmation), the venue itself; its
  fills then come from the ``venue_sync`` job instead of the candles.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from bot.app import (
    WARMUP_HISTORY_CANDLES,
    ManagedExchange,
    ProcessParts,
    TradingProcess,
)
from bot.demo_models import DEMO_MODELS_DIR, DemoEnsemble
from bot.ensemble_loader import refuse_other_features, saved_ensemble
from bot.event_keep import SUFFIX as EVENT_KEEP_SUFFIX
from bot.file_lock import FileLock, LockHeld
from bot.halt_note import SUFFIX as HALT_NOTE_SUFFIX
from bot.market_rules import MarketRulesSource, rules_book
from bot.trading import ema_rsi_from, paper_exchange
from bot.universe_live import LiveUniverse
from core.clock import AcceleratedClock, Clock, LiveClock
from core.config import Settings
from core.domain.enums import CandleMarket, TradingMode
from core.domain.market import CandleSeries, grid_floor_ms, timeframe_to_ms
from core.errors import ConfigError, DependencyError, OperationalError
from core.exchange.ccxt import CcxtExchange, CcxtMarketData, make_ccxt_exchange
from core.market.download import download_candles
from core.market.feeds import PollingFeed, ReplayFeed
from core.market.importers import read_candle_file, traded_market_note
from core.market.synthetic import generate_candles, with_crash
from core.ports import MarketData
from core.services.health import HealthConfig
from core.signals.base import SignalProvider
from core.signals.handover import HandOverProvider
from storage import open_storage
from storage.db import database_file

log = logging.getLogger(__name__)

# Rough 2024 price levels so the synthetic demo looks familiar; any other symbol starts at 100.
_START_PRICES = {"BTC": 42_000.0, "ETH": 2_300.0, "SOL": 100.0, "BNB": 310.0}
PREFLIGHT_TIMEOUT_S = 15.0


def demo_database_url(settings: Settings) -> str:
    """Return the demo's own SQLite URL (the demo never touches the run database)."""
    return f"sqlite+aiosqlite:///{settings.app.data_dir / 'demo.sqlite'}"


def demo_market(settings: Settings) -> tuple[dict[str, CandleSeries], int]:
    """Return the demo's candles per symbol (history then replay) and the replay start (ms)."""
    demo = settings.demo
    wanted = demo.history_candles + demo.replay_candles
    if demo.data_file is not None:
        path = Path(demo.data_file)
        loaded = read_candle_file(path, now_ms=int(time.time() * 1000))
        traded = CandleMarket.traded(settings.exchange.market_type)
        note = traded_market_note(path, loaded.market, traded, "the demo")
        if note:
            log.warning("note: %s", note)
        series = loaded.series
        if len(series) <= demo.history_candles:
            raise ConfigError(
                f"{demo.data_file} has {len(series)} candles; the demo needs more than "
                f"QT__DEMO__HISTORY_CANDLES={demo.history_candles}"
            )
        series = series.slice(max(0, len(series) - wanted))
        replay_start = int(series.ts_ms[min(demo.history_candles, len(series) - 1)])
        return {series.symbol: series}, replay_start
    tf_ms = timeframe_to_ms(settings.trading.timeframe)
    first_ms = demo.start_ms - demo.history_candles * tf_ms
    markets = {
        symbol: _priced_at_replay(
            generate_candles(
                symbol,
                settings.trading.timeframe,
                wanted,
                seed=demo.seed,
                start_ms=grid_floor_ms(first_ms, settings.trading.timeframe),
                trend_scale=demo.trend_scale,
            ),
            demo.history_candles,
            _START_PRICES.get(symbol.split("/")[0], 100.0),
        )
        for symbol in settings.trading.symbols
    }
    if demo.crash_after_candles:
        at = demo.history_candles + demo.crash_after_candles
        if at >= wanted:
            raise ConfigError(
                f"QT__DEMO__CRASH_AFTER_CANDLES={demo.crash_after_candles} is after the replay's "
                f"{demo.replay_candles} candles"
            )
        markets = {s: with_crash(ser, at, demo.crash_pct) for s, ser in markets.items()}
    any_series = next(iter(markets.values()))
    return markets, int(any_series.ts_ms[demo.history_candles])


def _priced_at_replay(series: CandleSeries, at: int, price: float) -> CandleSeries:
    """Return ``series`` scaled so the replay opens at ``price`` (however the history moved)."""
    factor = price / float(series.open[min(at, len(series) - 1)]) if len(series) else 1.0
    return series.scaled(factor)


def _claim_demo_database(settings: Settings) -> FileLock:
    """Lock the demo's database for this process, then delete it: every demo starts clean.

    A second demo in the same folder is refused while the first runs (``qt state --demo``
    finds a running demo by this one file, so each run cannot have its own).
    """
    db_file = settings.app.data_dir / "demo.sqlite"
    lock = _lock_database(
        db_file,
        "another `qt demo` ({holder}) is using {database}; stop it first, or run this one "
        "with its own QT__APP__DATA_DIR",
    )
    # With it, what a demo killed during an outage left beside it: its halt, its events.
    for suffix in ("", "-wal", "-shm", HALT_NOTE_SUFFIX, EVENT_KEEP_SUFFIX):
        Path(f"{db_file}{suffix}").unlink(missing_ok=True)
    # The files of the model versions that database registered: gone with it.
    shutil.rmtree(settings.app.data_dir / DEMO_MODELS_DIR, ignore_errors=True)
    return lock


async def build_demo(settings: Settings) -> TradingProcess:
    """Build the offline demo: accelerated replay, paper exchange, its own fresh database
    (locked until the process stops). It trades the ensemble unless QT__STRATEGY__PROVIDER
    says otherwise: the baseline until the ensemble is trained (``bot.demo_models``)."""
    started_s = time.monotonic()  # the first ensemble entry is timed from here
    check_sizer_learns(settings, "demo")
    # Off the loop's thread: Arrow cancels a main-thread read when Ctrl-C or SIGTERM arrives,
    # which would turn a stop request into "bad file". Here the loop takes the signal (the
    # process then stops as soon as it starts) and the read completes.
    markets, replay_start_ms = await asyncio.to_thread(demo_market, settings)
    timeframe = next(iter(markets.values())).timeframe
    settings = settings.with_market(list(markets), timeframe)
    lock = await asyncio.to_thread(_claim_demo_database, settings)
    try:
        return _demo_process(settings, markets, replay_start_ms, lock, started_s)
    except BaseException:
        lock.release()
        raise


def _demo_process(
    settings: Settings,
    markets: dict[str, CandleSeries],
    replay_start_ms: int,
    lock: FileLock,
    started_s: float,
) -> TradingProcess:
    timeframe = next(iter(markets.values())).timeframe
    storage = open_storage(
        demo_database_url(settings),
        candle_market=CandleMarket.traded(settings.exchange.market_type),
    )
    tf_ms = timeframe_to_ms(timeframe)
    speed = settings.demo.candles_per_second * tf_ms / 1000
    clock = AcceleratedClock(start_ms=replay_start_ms, speed=speed)
    history = {s: ser.between(None, replay_start_ms) for s, ser in markets.items()}
    replay = {s: ser.between(replay_start_ms, None) for s, ser in markets.items()}
    source = "file" if settings.demo.data_file else "synthetic"

    async def store_history_and_start_clock() -> None:
        for series in history.values():
            await storage.candles.upsert(source, series)
        clock.anchor_now()

    feed = ReplayFeed(replay, clock)
    book = rules_book(settings)  # the engine's too: one view of each symbol's rules
    paper = paper_exchange(settings, storage, clock, book)
    ensemble = settings.strategy.provider_in("demo") == "ensemble"
    signals = HandOverProvider(ema_rsi_from(settings)) if ensemble else None
    process = TradingProcess(
        ProcessParts(
            settings=settings,
            clock=clock,
            storage=storage,
            database_url=demo_database_url(settings),
            exchange=paper,
            venue=paper,
            feed=feed,
            source=source,
            mode_label="demo",
            speed=speed,
            before_start=[store_history_and_start_clock],
            extra=[lock],  # released last, after storage closed the database
            book=book,
            rules_candles=markets,
            provider=signals,
            models_dir=settings.app.data_dir / DEMO_MODELS_DIR
            if learns(settings, "demo")
            else None,
        )
    )
    if signals is not None:
        demo_models = DemoEnsemble(
            settings,
            signals=signals,
            history=history,
            repo=storage.model_versions,
            bus=process.bus,
            clock=clock,
            invalidate=process.engine.signals.invalidate,
            started_s=started_s,
        )
        process.services.append(demo_models)
        if process.learning is not None:  # it retrains them; the first ones are the demo's
            process.learning.hold = lambda: not demo_models.settled
    return process


def ccxt_market_data(settings: Settings, exchange_name: str) -> CcxtMarketData:
    """Return a public (keyless) ccxt market-data client of ``exchange_name``'s production
    network: downloaded history is the real market's, whatever the sandbox setting."""
    return CcxtMarketData(
        make_ccxt_exchange(
            exchange_name,
            market_type=settings.exchange.market_type,
            timeout_s=settings.exchange.timeout_ms / 1000,
        )
    )


def venue_client(settings: Settings, *, keyed: bool) -> Any:
    """Return a ccxt client of the configured venue: one configuration (exchange, network,
    market type, timeout) for the candles the process trades on and the orders it sends, so
    a sandbox run never computes testnet orders from production prices. ``keyed``: with the
    API keys (orders), else public (candles)."""
    ex = settings.exchange
    return make_ccxt_exchange(
        ex.name,
        api_key=ex.api_key.get_secret_value() if keyed else None,
        secret=ex.api_secret.get_secret_value() if keyed else None,
        sandbox=ex.sandbox,
        timeout_s=ex.timeout_ms / 1000,
        market_type=ex.market_type,
    )


def candle_source(settings: Settings) -> str:
    """Return the name ``qt run`` stores its venue's candles under: a testnet's prices are not
    the market's, so they never join the production series of the same exchange."""
    name = settings.exchange.name
    return f"{name}-sandbox" if settings.exchange.sandbox else name


def live_exchange(settings: Settings, clock: Clock) -> CcxtExchange:
    """Return the keyed ccxt exchange that real orders go to (QT__TRADING__MODE=live only)."""
    if settings.trading.mode is not TradingMode.LIVE:
        raise ConfigError("real orders need QT__TRADING__MODE=live (and its confirmation)")
    return CcxtExchange(
        venue_client(settings, keyed=True),
        clock=clock,
        market_type=settings.exchange.market_type,
        symbols=settings.trading.symbols,  # checked at start: an unlisted one stops it there
    )


DATABASE_LOCK_SUFFIX = ".lock"


def _claim_run_database(settings: Settings) -> FileLock | None:
    """Lock the database of ``qt run`` for this process (None in memory: nothing to share).

    Two processes on one database would both manage its trades: each syncing, replacing and
    canceling the other's orders, each opening entries against the limits the other does not
    count (a supervisor that starts a new one while the old one hangs, a second terminal). The
    lock dies with its process (SIGKILL included), so a restart after a crash takes it at once.
    """
    database = database_file(settings.database_url)
    if database is None:
        return None
    return _lock_database(
        database,
        "another `qt run` ({holder}) is using {database}; two processes on one database would "
        "both trade its positions: stop it first, or give this one its own QT__DATABASE__URL",
    )


def _lock_database(database: Path, refused: str) -> FileLock:
    """Lock ``database`` for this process (``<database>.lock``, holding its pid); held by
    another, an ``OperationalError`` of ``refused`` (with ``{holder}`` and ``{database}``)."""
    lock = FileLock(database.with_name(database.name + DATABASE_LOCK_SUFFIX))
    try:
        lock.acquire()
    except LockHeld as held:
        raise OperationalError(refused.format(holder=held.holder, database=database)) from held
    return lock


async def build_run(
    settings: Settings,
    market_data: CcxtMarketData | None = None,
    exchange: ManagedExchange | None = None,
    clock: Clock | None = None,
    speed: float = 1.0,
) -> TradingProcess:
    """Build ``qt run``: live public candles via ccxt, the configured database, and paper
    orders, or with QT__TRADING__MODE=live real orders on the configured venue.

    ``market_data`` and ``exchange`` replace the clients built from settings (tests point them
    at fakes); ``exchange`` is only used in live mode. ``clock`` (the wall clock unless given)
    and its ``speed`` replace market time (the chaos harness runs it accelerated). The
    database is locked for the process first: a second ``qt run`` on it is refused.
    """
    lock = await asyncio.to_thread(_claim_run_database, settings)
    try:
        return await _build_run(settings, market_data, exchange, clock, speed, lock)
    except BaseException:
        if lock is not None:
            lock.release()
        raise


async def _build_run(
    settings: Settings,
    market_data: CcxtMarketData | None,
    exchange: ManagedExchange | None,
    clock: Clock | None,
    speed: float,
    lock: FileLock | None,
) -> TradingProcess:
    live = settings.trading.mode is TradingMode.LIVE
    check_sizer_learns(settings, "run")
    provider = await run_provider(settings)
    market_data = market_data or CcxtMarketData(venue_client(settings, keyed=False))
    source = candle_source(settings)
    try:
        await check_reachable(
            market_data,
            settings.exchange.name,
            settings.trading.symbols[0],
            settings.trading.timeframe,
        )
    except BaseException:
        await market_data.close()
        raise
    clock = clock or LiveClock()
    universe = None
    if settings.universe.dynamic:  # the top N by volume now, then every REFRESH_HOURS (a job)
        universe = LiveUniverse(settings, market_data, clock, warmup=WARMUP_HISTORY_CANDLES)
        try:
            first = await universe.first_selection()
        except BaseException:
            await market_data.close()
            raise
        settings = settings.with_market(list(first), settings.trading.timeframe)
    # The feed, the warm-up and the signals' seed all use the traded market's series.
    storage = open_storage(
        settings.database_url, candle_market=CandleMarket.traded(settings.exchange.market_type)
    )

    async def fetch_warmup_history() -> None:
        """Store the recent closed candles so the engine's indicators are warm at the start."""
        tf, now_ms = settings.trading.timeframe, clock.now_ms()
        tf_ms = timeframe_to_ms(tf)
        for symbol in settings.trading.symbols:
            await download_candles(
                market_data,
                storage.candles,
                exchange=source,
                symbol=symbol,
                timeframe=tf,
                since_ms=grid_floor_ms(now_ms, tf) - WARMUP_HISTORY_CANDLES * tf_ms,
                until_ms=now_ms,
                now_ms=now_ms,
            )

    feed = PollingFeed(
        market_data,
        universe.wanted if universe else settings.trading.symbols,
        settings.trading.timeframe,
        clock,
    )
    book = rules_book(settings)
    paper = None if live else paper_exchange(settings, storage, clock, book)
    # Orders are sized and rounded by the venue's own rules of every symbol: paper from its
    # public markets, live from the keyed client's (with the leverage caps).
    rules: MarketRulesSource | None = getattr(market_data, "load_market_rules", None)
    if paper is not None:
        orders: ManagedExchange = paper
    else:
        orders = exchange or live_exchange(settings, clock)
        rules = getattr(orders, "load_market_rules", None)
        log.warning("LIVE trading on %s: real orders, real money", settings.exchange.name)
    starting: list[Callable[[], Awaitable[None]]] = [fetch_warmup_history]
    if universe is not None:
        starting.append(universe.publish_first)  # the audit trail's first universe
        starting.append(universe.warm_restored)  # open trades of symbols it left out
    return TradingProcess(
        ProcessParts(
            settings=settings,
            clock=clock,
            storage=storage,
            database_url=settings.database_url,
            exchange=orders,
            venue=paper,
            feed=feed,
            source=source,
            mode_label="live" if live else "run",
            speed=speed,
            before_start=starting,
            # the lock released last, after storage closed the database
            extra=[_Closer(market_data), *([lock] if lock is not None else [])],
            market_rules=rules,
            book=book,
            universe=universe,
            provider=provider,
            models_dir=settings.app.data_dir if learns(settings, "run") else None,
            stale_entry_candles=HealthConfig().stale_candles,  # the health check's rule
        )
    )


async def run_provider(settings: Settings) -> SignalProvider | None:
    """Return the ensemble of the serving versions when QT__STRATEGY__PROVIDER=ensemble;
    without a version to serve the baseline, with a warning saying how the ensemble comes
    (the learning manager trains it, handing over when its first champions exist; without
    the manager, ``qt models train``); None: the baseline was asked for."""
    if settings.strategy.provider_in("run") != "ensemble":
        return None
    # an unreadable champion falls back to an earlier one, said as a warning
    provider = await saved_ensemble(settings)
    if provider is None:
        if learns(settings, "run"):
            log.warning(
                "QT__STRATEGY__PROVIDER=ensemble has no model version to serve: ema_rsi "
                "trades until the learning manager has trained the first champions"
            )
            return HandOverProvider(ema_rsi_from(settings))
        log.warning(
            "QT__STRATEGY__PROVIDER=ensemble has no saved model versions: ema_rsi trades; "
            "train them with `qt models train` and restart"
        )
        return ema_rsi_from(settings)
    refuse_other_features(provider, settings.trading.timeframe)
    log.info("ensemble of %s trades", ", ".join(m.version_id for m in provider.members))
    return provider


def learns(settings: Settings, mode: Literal["demo", "run"]) -> bool:
    """Return whether the learning manager runs in ``mode`` (the ensemble trades there)."""
    return settings.learning.enabled and settings.strategy.provider_in(mode) == "ensemble"


def check_sizer_learns(settings: Settings, mode: Literal["demo", "run"]) -> None:
    """Refuse RL sizing by the registry's champion where no learning manager serves it."""
    s = settings.sizing
    if s.method == "rl" and not s.policy_dir and not learns(settings, mode):
        raise ConfigError(
            "QT__SIZING__METHOD=rl without QT__SIZING__POLICY_DIR sizes by the registry's "
            "rl_sizer, which the learning manager trains and serves: it needs the ensemble "
            "trading (QT__STRATEGY__PROVIDER=ensemble) and QT__LEARNING__ENABLED=true; or "
            "give QT__SIZING__POLICY_DIR (a qt evaluate --sizing policy)"
        )


class _Closer:
    """Give the ccxt client the start/stop lifecycle so it closes with the process."""

    def __init__(self, market_data: CcxtMarketData) -> None:
        self._md = market_data

    async def start(self) -> None:
        """Nothing to do: the client connects lazily."""

    async def stop(self) -> None:
        """Close the client's HTTP session."""
        await self._md.close()


async def check_reachable(
    market_data: MarketData, exchange_name: str, symbol: str, timeframe: str
) -> None:
    """Fail fast with a helpful message when the exchange cannot be reached (e.g. offline).

    Only a failure to get an answer is "cannot reach": a venue that answered no (an unknown
    symbol, bad keys) says so in its own words, not with a question whether we are offline.
    """
    try:
        await asyncio.wait_for(
            market_data.fetch_ohlcv(symbol, timeframe, None, 2), timeout=PREFLIGHT_TIMEOUT_S
        )
    except (DependencyError, TimeoutError) as e:
        raise OperationalError(
            f"cannot reach {exchange_name} for {symbol} market data ({e or 'timeout'}). "
            "Are you offline? `qt demo` runs the whole process on a replayed market."
        ) from e
