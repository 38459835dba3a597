"""The composition root: Settings -> storage -> exchange -> bus -> services -> jobs -> front end.

This is the only place that knows which clock, feed and exchange the process uses; the rest of
the code runs the same in demo and run. Components start in dependency order and stop in
reverse; start-up is also the recovery path (the paper exchange reloads its state).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bot.brains import build_brains, policy_store
from bot.chat.dispatch import Dispatcher
from bot.chat.notifier import Notifier
from bot.chat.push import PushTarget
from bot.event_keep import event_keep_for
from bot.halt_note import halt_note_for
from bot.market_rules import MarketRulesSource, ProcessRules, rules_book
from bot.trading import build_engine
from bot.universe_live import LiveUniverse
from core.clock import Clock
from core.config import Settings
from core.domain.events import Event, ProcessStarted, ProcessStopped
from core.domain.market import CandleSeries, timeframe_to_ms
from core.market.feeds import CandleFeed
from core.market.rules_book import RulesBook
from core.market.stored import load_checked
from core.ports import Exchange, Storage
from core.services.bus import EventBus
from core.services.health import HealthMonitor, HealthSources, LoopLagProbe, Status
from core.services.learning import LearningManager
from core.services.market import MarketService, SimulatedVenue
from core.services.portfolio import PortfolioService
from core.services.reconciliation import reconcile_positions, venue_positions
from core.services.trading_state import TradingStateService
from core.signals.base import SignalProvider
from core.signals.handover import last_retrains
from jobs.registry import JOBS, JobContext
from jobs.scheduler import JobScheduler

log = logging.getLogger(__name__)

WARMUP_HISTORY_CANDLES = 2_000  # stored candles handed to the signal provider at start


class Component(Protocol):
    """Anything with an async lifecycle."""

    async def start(self) -> None:
        """Start."""
        ...

    async def stop(self) -> None:
        """Stop."""
        ...


class ManagedExchange(Exchange, Component, Protocol):
    """The exchange port with a lifecycle (the paper exchange, ``CcxtExchange``)."""


@dataclass
class ProcessParts:
    """What differs between demo and run, chosen by the caller once."""

    settings: Settings
    clock: Clock
    storage: Storage
    database_url: str
    exchange: ManagedExchange  # where orders go: the paper exchange, or a live venue
    venue: SimulatedVenue | None  # fills orders from candles (paper); None: the venue reports
    feed: CandleFeed
    source: str  # name under which candles are stored ("synthetic", "binance", ...)
    mode_label: str  # "demo" or "run"
    speed: float = 1.0  # market seconds per wall second
    before_start: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    extra: list[Component] = field(default_factory=list)  # e.g. the ccxt client, closed last
    # The venue's precision and minimums per symbol; None: no venue to ask (the demo).
    market_rules: MarketRulesSource | None = None
    book: RulesBook | None = None  # shared with the paper exchange; None: a new one
    # Candles to infer a symbol's rules from when no venue states them (the demo: its whole
    # replay, as a backtest of the same file does); None: the warm-up history.
    rules_candles: Mapping[str, CandleSeries] | None = None
    universe: LiveUniverse | None = None  # a dynamic universe (QT__UNIVERSE__MODE=volume)
    provider: SignalProvider | None = None  # None: the baseline of the strategy settings
    # Where the learning manager's model versions keep their files (the registry's data
    # dir); None: no learning manager (the ensemble does not trade, or QT__LEARNING__ENABLED)
    models_dir: Path | None = None
    # Entries on a candle that closed more than this many candles ago are skipped (a polling
    # feed catching up after it stopped: the health check's stale rule); None: never (a
    # replay, whose candles are never late).
    stale_entry_candles: float | None = None


class TradingProcess:
    """The one asyncio process: wires services and owns their lifecycle."""

    def __init__(self, parts: ProcessParts) -> None:
        self.parts = parts
        p = parts
        self.storage = p.storage
        self.clock = p.clock
        # The events the audit trail refuses wait beside the database too (a kill during an
        # outage loses none); those a killed process left are written first.
        self.bus = EventBus(sink=p.storage.events.append, keep=event_keep_for(p.database_url))
        self.exchange = p.exchange
        self.market = MarketService(
            feed=p.feed,
            clock=p.clock,
            candles=p.storage.candles,
            bus=self.bus,
            source=p.source,
            timeframe=p.settings.trading.timeframe,
            venue=p.venue,
        )
        self.trading_state = TradingStateService(
            p.storage.state, self.bus, p.clock, note=halt_note_for(p.database_url)
        )
        # An audit trail that cannot be written halts trading (fail closed), loses nothing.
        self.bus.on_storage_failure(self.trading_state.fail_closed)
        self.portfolio = PortfolioService(
            exchange=p.exchange,
            balances=p.storage.balances,
            bus=self.bus,
            clock=p.clock,
            quote=p.settings.trading.quote_currency,
            prices=lambda: self.market.stats.last_close,
        )
        self.rules = ProcessRules(
            settings=p.settings,
            book=p.book or rules_book(p.settings),
            repo=p.storage.market_rules,
            clock=p.clock,
            fetch=p.market_rules,
        )
        self.policy = policy_store(p.settings, p.storage, self.bus, p.clock)
        self.engine = build_engine(
            p.settings,
            clock=p.clock,
            bus=self.bus,
            exchange=p.exchange,
            trading_state=self.trading_state,
            state=p.storage.state,
            trades=p.storage.trades,  # /trades and /profit survive a restart
            book=self.rules.book,
            provider=p.provider,
            offload_signals=True,  # demo and run: the loop serves fills, jobs and chat meanwhile
            policy=self.policy.current,
        )
        if p.stale_entry_candles is not None:
            candle_ms = timeframe_to_ms(p.settings.trading.timeframe)
            self.engine.stale_entry_ms = int(p.stale_entry_candles * candle_ms)
        self.brains = build_brains(
            p.settings,
            engine=self.engine,
            store=self.policy,
            storage=p.storage,
            bus=self.bus,
            clock=p.clock,
        )
        self.learning: LearningManager | None = None
        if p.models_dir is not None:
            from bot.learning import build_learning

            self.learning = build_learning(
                p.settings,
                engine=self.engine,
                storage=p.storage,
                bus=self.bus,
                clock=p.clock,
                source=p.source,
                data_dir=p.models_dir,
            )
        self.lag = LoopLagProbe()
        self.health = HealthMonitor(
            HealthSources(
                symbols=self._watched_symbols,
                last_close_ms=self.engine.signals.last_close_ms,
                venue_probe=p.exchange.fetch_balances,
                venue_faults=_fault_count(p.exchange),
                trained_until_ms=lambda: last_retrains(self.engine.signals.provider),
                drift=dict if self.learning is None else self.learning.drifting,
                lag=self.lag,
                state=p.storage.state,
                data_dir=p.settings.app.data_dir,
            ),
            bus=self.bus,
            clock=p.clock,
            candle_ms=timeframe_to_ms(p.settings.trading.timeframe),
        )
        if self.brains is not None:
            self.brains.risk.health = self.health.issues  # the Risk Brain scores them
        self.market.on_candle(self.engine.on_candle, before_fills=self.engine.before_fills)
        # the symbols' candles of one close: their signals computed together, off the loop
        self.market.before_batch(self.engine.before_batch)
        if p.universe is not None:
            p.universe.bind(
                self.engine, self.bus, p.storage.candles, p.source, self.rules, p.storage.state
            )
        jobs = JobContext(
            portfolio=self.portfolio,
            # A live venue fills on its own: ask it what happened to our orders.
            venue_sync=self.engine.sync_with_venue if p.venue is None else None,
            market_rules=self.rules.refresh if self.rules.fetches else None,
            universe_refresh=p.universe.refresh if p.universe else None,
            universe_every_s=p.universe.every_s if p.universe else 0.0,
            brains_cycle=None if self.brains is None else self.brains.cycle,
            strategy_review=None if self.brains is None else self.brains.strategy.review,
            assess_every_s=p.settings.brains.assess_every_minutes * 60.0,
            review_every_s=p.settings.brains.review_every_hours * 3600.0,
            policy_refresh=self.policy.refresh if self.brains is None else self.brains.adopt,
            daily_report=self._daily_report,
            health_check=self._health_check,
            learning_check=None if self.learning is None else self.learning.check,
            learning_every_s=p.settings.learning.check_every_hours * 3600.0,
        )
        self.scheduler = JobScheduler(JOBS, jobs, bus=self.bus, clock=p.clock, speed=p.speed)
        self.front_ends: list[Component] = []
        # Chat front ends that push alerts on their own (bot.chat.push); the notifier and the
        # command dispatcher are attached by the runner (bot.chat.wiring.attach_chat).
        self.push_targets: list[PushTarget] = []
        self.notifier: Notifier | None = None
        self.commands: Dispatcher | None = None
        # Started after the front ends (which then show what they say) and process.started,
        # before the feed: the demo's ensemble training.
        self.services: list[Component] = []
        self._started: list[Component] = []
        self._market_task: asyncio.Task[None] | None = None
        self.finished = asyncio.Event()
        self.events_seen = 0
        self.bus.subscribe("*", self._count)

    async def _count(self, _event: Event) -> None:
        self.events_seen += 1

    def _watched_symbols(self) -> tuple[str, ...]:
        """Return the symbols whose data must be fresh: the universe's now, else the list."""
        universe = self.engine.universe
        if universe is not None and universe.started:
            return universe.current
        return tuple(self.parts.settings.trading.symbols)

    async def _health_check(self) -> str:
        """Check the health (the ``health`` job); say something only when not all is well."""
        before = self.health.latest
        report = await self.health.check()
        if report.status is Status.OK and (before is None or before.status is Status.OK):
            return ""  # every minute: the audit trail keeps what matters
        wrong = [
            f"{c.name} {c.status.value}: {c.detail}"
            for c in report.checks
            if c.status is not Status.OK
        ]
        return f"health {report.status.value}" + (f": {'; '.join(wrong)}" if wrong else "")

    async def _daily_report(self) -> str:
        """Push the daily summary to the chats (the ``daily_report`` job)."""
        if self.notifier is None or self.commands is None or not self.notifier.lanes:
            return ""  # no chat to push to: nothing to audit
        from bot.chat.reports import daily_report

        reply = await daily_report(self.commands.core)
        sent = await self.notifier.report(reply)
        return f"daily report queued for {sent} chat(s)"

    async def start(self) -> None:
        """Start every component in dependency order, then begin consuming the feed."""
        await self._start(self.storage)
        await self.bus.flush()  # the events a process killed during an outage kept
        for hook in self.parts.before_start:
            await hook()
        await self.policy.start()  # the mode and levers in force before the restart
        warmup = await self._seed_signals()
        await self._start(self.exchange)
        candles = self.parts.rules_candles
        await self.rules.start(warmup if candles is None else candles)
        await self._start(self.engine)  # restores open trades against the exchange
        await self.trading_state.current()
        await self._start(self.lag)
        await self._start(self.scheduler)
        for front in self.front_ends:
            await self._start_front_end(front)
        settings = self.parts.settings
        # before the first candle, once the front ends can push the alert
        await reconcile_positions(
            await venue_positions(self.engine.unknown_positions),
            rule=settings.trading.unknown_positions,
            trading_state=self.trading_state,
            bus=self.bus,
            clock=self.clock,
            adopt=self.engine.adopt,
            note=self.engine.trade_note,
        )
        await self.bus.publish(
            ProcessStarted(
                ts_ms=self.clock.now_ms(),
                mode=self.parts.mode_label,
                exchange=self.parts.source,
                symbols=tuple(settings.trading.symbols),
            )
        )
        await self.policy.announce()
        # the learning manager last: it adopts what the others (the demo's models) set up
        for service in [*self.services, *([self.learning] if self.learning else [])]:
            await self._start(service)
        self._market_task = asyncio.create_task(self._consume(), name="market-loop")

    async def _seed_signals(self) -> dict[str, CandleSeries]:
        """Give the engine the stored recent history of each symbol (indicator warm-up);
        return it by symbol."""
        trading = self.parts.settings.trading
        tf_ms = timeframe_to_ms(trading.timeframe)
        since_ms = self.clock.now_ms() - WARMUP_HISTORY_CANDLES * tf_ms
        seeded: dict[str, CandleSeries] = {}
        for symbol in trading.symbols:
            # Checked like a file: a stored candle dated after now (an earlier version's
            # database) would make every new candle look old to the signals, silently.
            checked = await load_checked(
                self.storage.candles,
                self.parts.source,
                symbol,
                trading.timeframe,
                now_ms=self.clock.now_ms(),
                start_ms=since_ms,
            )
            if checked.notice:
                log.warning("%s", checked.notice)
            series = checked.series
            if len(series):
                self.engine.signals.seed(series)
                # The engine values holdings at these until their next candle (a restart
                # must size the next entry on the same account value as before it).
                self.engine.observe_price(symbol, float(series.close[-1]))
                seeded[symbol] = series
        return seeded

    async def _start(self, component: Component) -> None:
        await component.start()
        self._started.append(component)

    async def _start_front_end(self, front: Component) -> None:
        """Start a front end; one that cannot start is logged, and trading goes on without."""
        try:
            await self._start(front)
        except (Exception, SystemExit):  # SystemExit: rich's, on a closed stdout
            log.exception("front end %s failed to start; trading goes on without it", _name(front))

    async def _consume(self) -> None:
        try:
            await self.market.run()
        finally:
            self.finished.set()

    async def stop(self, reason: str) -> None:
        """Stop the feed first, record the final state, then stop components in reverse order.

        Every step runs even if an earlier one failed (a storage that is never closed loses
        the last writes). A front end's failure is logged: its output is optional, the
        shutdown is not. Any other failure is raised once every step has run.
        """
        if self._market_task is not None:
            self._market_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._market_task
            self._market_task = None
        failures: list[BaseException] = []
        for component in reversed(self._started):
            if component is self.engine:
                # Everything started after the engine has stopped; storage and the exchange
                # still run: record the final state before they go.
                await self._step(failures, "the final snapshot", self.portfolio.snapshot)
                await self._step(failures, "process.stopped", self._publish_stopped, reason)
            optional = any(component is front for front in self.front_ends)
            await self._step(failures, _name(component), component.stop, optional=optional)
        for extra in reversed(self.parts.extra):
            await self._step(failures, _name(extra), extra.stop)
        self._started.clear()
        if failures:
            raise failures[0]

    async def _publish_stopped(self, reason: str) -> None:
        await self.bus.publish(ProcessStopped(ts_ms=self.clock.now_ms(), reason=reason))

    @staticmethod
    async def _step(
        failures: list[BaseException],
        what: str,
        step: Callable[..., Awaitable[object]],
        *args: object,
        optional: bool = False,
    ) -> None:
        """Run one shutdown step; log a failure and keep it for later, unless ``optional``."""
        try:
            await step(*args)
        except (Exception, SystemExit) as exc:  # SystemExit: rich's, on a closed stdout
            log.exception("stopping %s failed; the shutdown goes on", what)
            if not optional:
                failures.append(exc)

    async def run_until(self, stop: asyncio.Event) -> str:
        """Run until ``stop`` is set or the feed ends; return why the process stopped."""
        stop_wait = asyncio.create_task(stop.wait())
        done_wait = asyncio.create_task(self.finished.wait())
        done, pending = await asyncio.wait(
            {stop_wait, done_wait}, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._market_task is not None and self._market_task.done():
            error = self._market_task.exception()
            if error is not None:
                raise error
        return "signal" if stop_wait in done else "feed ended"


def _name(component: object) -> str:
    return type(component).__name__


def _fault_count(exchange: object) -> Callable[[], int] | None:
    """Return how to read the venue adapter's count of temporary failures (None: it keeps
    none, the paper exchange)."""
    if not isinstance(getattr(exchange, "fault_count", None), int):
        return None
    return lambda: int(getattr(exchange, "fault_count", 0))
