"""Backtest wiring: SimClock + paper exchange on memory storage + the same market loop and Engine.

Nothing here decides a trade: the candles go through ``MarketService`` (the paper exchange fills
with the shared fill model, then the engine runs its cycle) exactly as in ``qt demo`` and
``qt run``; only the clock (simulated, driven by the feed), the storage (in memory) and the
feed (a replay as fast as possible) differ. With ``detail`` candles (e.g. 5m under a 1h
strategy) the exchange fills against the finer candles inside each strategy candle, and the
engine reacts to each fill before the next finer candle, as it would live.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from bot.backtest_window import Sources, check_window, trading_start_ms
from bot.brains import build_brains, policy_store
from bot.market_rules import resolved, rules_book
from bot.trading import build_engine, paper_exchange
from core.analytics import (
    BacktestInput,
    BacktestMetrics,
    BenchmarkSeries,
    EquityCurve,
    align_close,
    compute_metrics,
)
from core.analytics.equity import equity_curve
from core.clock import SimClock
from core.config import Settings
from core.domain.enums import MarketType
from core.domain.events import (
    AlertRaised,
    Event,
    ExposureReduced,
    FundingSettled,
    ModeChanged,
    OrderDenied,
    PolicyUpdated,
    RegimeChanged,
    RiskAssessed,
    StrategyReviewed,
    StrategySelected,
    SymbolFailed,
)
from core.domain.market import CandleSeries, timeframe_to_ms
from core.domain.market_rules import RulesInForce
from core.domain.orders import Fill, Order
from core.domain.portfolio import Position
from core.domain.trades import ClosedTrade
from core.errors import DataError, InvariantViolation
from core.exchange.paper import PaperExchange
from core.market.feeds import ReplayFeed
from core.market.funding import FundingRates
from core.ml.ensemble import EnsembleProvider
from core.services.brains import Brains
from core.services.bus import EventBus
from core.services.engine import Engine
from core.services.market import MarketService
from core.services.portfolio import PortfolioService
from core.services.replay import FastReplay
from core.services.risk_limits import FundingLookup
from core.services.trading_state import TradingStateService
from core.services.universe import UniverseSummary, universe_from_history
from core.signals.base import SignalProvider
from core.signals.meta import MetaStrategy
from jobs.registry import JOBS, JobContext, JobSpec
from jobs.simulated import SimulatedJobs
from storage.memory import MemoryStorage

if TYPE_CHECKING:  # the walk-forward (the learning manager, its workers) only when asked for
    from bot.walk_forward import WalkForward


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class BacktestResult:
    """Everything a backtest produced."""

    def __repr__(self) -> str:
        # Short: asyncio.run formats the finished task's result when it restores the SIGINT
        # handler, and the generated repr of every fill and order cost 0.17 s a run.
        return (
            f"BacktestResult({self.candles} candles, {len(self.trades)} trades, "
            f"{len(self.fills)} fills, {self.open_positions} open)"
        )

    metrics: BacktestMetrics
    trades: tuple[ClosedTrade, ...]
    fills: tuple[Fill, ...]
    curve: EquityCurve
    benchmarks: tuple[BenchmarkSeries, ...]
    candles: int
    open_positions: int
    events: int
    funding_events: int = 0  # funding settlements on open positions
    detail_fallbacks: int = 0  # strategy candles whose detail had gaps: filled on themselves
    symbol_failures: tuple[SymbolFailed, ...] = ()  # cycles that raised: those symbols paused
    orders: tuple[Order, ...] = ()  # every order sent, as the paper venue last saw it
    # Open positions whose symbol's candles ended before the run did (delisted, or missing
    # data): nothing could manage them after their last candle, and they kept a position slot.
    stranded: tuple[tuple[str, int], ...] = ()  # (symbol, open time of its last candle)
    universe: UniverseSummary | None = None  # a dynamic universe's refreshes and changes
    job_runs: tuple[tuple[str, int], ...] = ()  # (job id, simulated time) of each job run
    regime_changes: tuple[RegimeChanged, ...] = ()  # every symbol's, as the engine saw them
    selections: tuple[StrategySelected, ...] = ()  # the meta-strategy's changes of pick
    denials: Mapping[str, int] = field(default_factory=dict)  # OrderDenied by reason code
    # The brains' assessments, mode changes, policy versions, exposure cuts, alerts, reviews.
    brain_events: tuple[Event, ...] = ()
    # The candles the run used, each symbol's up to end_ms: the very histories the provider
    # computed its signals on (the ensemble's caches are kept per history object).
    window: Mapping[str, CandleSeries] = field(default_factory=dict)


def ensemble_in(provider: SignalProvider | None) -> EnsembleProvider | None:
    """Return the ensemble ``provider`` is, or the meta-strategy holds among its candidates."""
    if isinstance(provider, EnsembleProvider):
        return provider
    if isinstance(provider, MetaStrategy):
        found = [p for p in provider.candidates if isinstance(p, EnsembleProvider)]
        return found[0] if found else None
    return None


class _Collected:
    """The events of a run the result reports (the bus has no audit sink in a backtest)."""

    def __init__(self, bus: EventBus) -> None:
        self.settled: list[FundingSettled] = []
        self.failed: list[SymbolFailed] = []
        self.regimes: list[RegimeChanged] = []
        self.selections: list[StrategySelected] = []
        self.denied: list[OrderDenied] = []
        self.brains: list[Event] = []  # what the brains decided and did, in order
        kept: dict[str, list[Any]] = {
            RiskAssessed.topic: self.brains,
            ModeChanged.topic: self.brains,
            PolicyUpdated.topic: self.brains,
            ExposureReduced.topic: self.brains,
            AlertRaised.topic: self.brains,
            StrategyReviewed.topic: self.brains,
            OrderDenied.topic: self.denied,
            FundingSettled.topic: self.settled,
            SymbolFailed.topic: self.failed,
            RegimeChanged.topic: self.regimes,
            StrategySelected.topic: self.selections,
        }

        async def collect(event: Event) -> None:
            kept[event.topic].append(event)

        for topic in kept:
            bus.subscribe(topic, collect, name=f"backtest.{topic}")


def _funding_lookup(funding: Mapping[str, FundingRates]) -> FundingLookup:
    """Return the funding filter's rate: the newest event's at or before the market time."""

    def rate(symbol: str, now_ms: int) -> Decimal | None:
        rates = funding.get(symbol)
        return None if rates is None else rates.rate_at(now_ms)

    return rate


def _stranded(
    positions: list[Position], window: Mapping[str, CandleSeries]
) -> tuple[tuple[str, int], ...]:
    """Return the open positions whose symbol's candles end before the others' last."""
    last = max((int(s.ts_ms[-1]) for s in window.values() if len(s)), default=0)
    ends = {sym: int(s.ts_ms[-1]) for sym, s in window.items() if len(s)}
    return tuple(
        (p.symbol, ends[p.symbol])
        for p in sorted(positions, key=lambda p: p.symbol)
        if p.symbol in ends and ends[p.symbol] < last
    )


def _check_detail_timeframes(
    detail: Mapping[str, CandleSeries], series: Mapping[str, CandleSeries], timeframe: str
) -> None:
    """Refuse detail candles of a symbol without strategy candles, or that are not strictly
    finer than ``timeframe`` and dividing it.

    The paper exchange fills each strategy candle against the detail candles that open inside
    it; a coarser candle reaches past the strategy candle's close (look-ahead: it fills at
    prices not traded yet), an equal one adds nothing, and one that does not divide the
    timeframe straddles two strategy candles.
    """
    tf_ms = timeframe_to_ms(timeframe)
    for symbol, finer in detail.items():
        if symbol not in series:
            raise DataError(
                f"detail candles for {symbol}, which has no strategy candles: pass its "
                f"{timeframe} file with --data too"
            )
        finer_ms = timeframe_to_ms(finer.timeframe)
        if finer_ms >= tf_ms:
            why = "coarser than" if finer_ms > tf_ms else "no finer than"
        elif tf_ms % finer_ms:
            why = "a timeframe that does not divide"
        else:
            continue
        raise DataError(
            f"detail candles of {symbol} are {finer.timeframe}, {why} the strategy's "
            f"{timeframe}: --detail needs a finer timeframe that divides it (e.g. 5m under 1h)"
        )


def _check_inputs(
    settings: Settings,
    series: Mapping[str, CandleSeries],
    detail: Mapping[str, CandleSeries] | None,
    funding: Mapping[str, FundingRates] | None,
) -> str:
    """Refuse inputs a backtest cannot run on; return the strategy timeframe."""
    if not series:
        raise DataError("a backtest needs candles for at least one symbol")
    if funding:
        if settings.exchange.market_type is not MarketType.PERP:
            raise DataError("funding rates apply to perps: set QT__EXCHANGE__MARKET_TYPE=perp")
        unknown = sorted(set(funding) - set(series))
        if unknown:
            raise DataError(f"funding rates for {', '.join(unknown)}, which has no candles")
    timeframes = {s.timeframe for s in series.values()}
    if len(timeframes) != 1:
        raise DataError(f"all symbols need one timeframe, received {sorted(timeframes)}")
    timeframe = timeframes.pop()
    if detail:
        _check_detail_timeframes(detail, series, timeframe)
    return timeframe


def _simulated_jobs(
    specs: Sequence[JobSpec],
    settings: Settings,
    *,
    engine: Engine,
    paper: PaperExchange,
    storage: MemoryStorage,
    bus: EventBus,
    clock: SimClock,
    walk_forward: WalkForward | None,
    brains: Brains | None = None,
) -> tuple[SimulatedJobs, Callable[[int], Awaitable[None]]]:
    """Return the jobs fired on simulated time from now on, and the full replay's hook that
    runs those due before a candle's close (recomputing the signals after any ran: a job
    may have changed the provider)."""
    portfolio = PortfolioService(
        exchange=paper,
        balances=storage.balances,
        bus=bus,
        clock=clock,
        quote=settings.trading.quote_currency,
        prices=lambda: {s: float(p) for s, p in engine.prices.items()},
    )
    ctx = JobContext(
        portfolio=portfolio,
        clock=clock,
        learning_check=None if walk_forward is None else walk_forward.check,
        learning_every_s=settings.models.retrain_s,
        brains_cycle=None if brains is None else brains.cycle,
        strategy_review=None if brains is None else brains.strategy.review,
        assess_every_s=settings.brains.assess_every_minutes * 60.0,
        review_every_s=settings.brains.review_every_hours * 3600.0,
    )
    due = SimulatedJobs(specs, ctx, bus=bus, clock=clock, start_ms=clock.now_ms())

    async def run_jobs_before(close_ms: int) -> None:
        if await due.run_due(close_ms - 1) and due.signals_changed:
            engine.signals.invalidate()

    return due, run_jobs_before


async def _replay(
    fast: bool,
    *,
    window: Mapping[str, CandleSeries],
    start_ms: int,
    market: MarketService,
    engine: Engine,
    paper: PaperExchange,
    funding: Mapping[str, FundingRates] | None,
    jobs: SimulatedJobs,
    run_jobs_before: Callable[[int], Awaitable[None]],
    walk_forward: WalkForward | None,
) -> int:
    """Replay the candles (fast: the quiet ones skipped) with the jobs; return the count."""
    try:
        return await _replay_candles(
            fast, window, start_ms, market, engine, paper, funding, jobs, run_jobs_before
        )
    finally:
        if walk_forward is not None:
            await walk_forward.stop()


async def _replay_candles(
    fast: bool,
    window: Mapping[str, CandleSeries],
    start_ms: int,
    market: MarketService,
    engine: Engine,
    paper: PaperExchange,
    funding: Mapping[str, FundingRates] | None,
    jobs: SimulatedJobs,
    run_jobs_before: Callable[[int], Awaitable[None]],
) -> int:
    clock = jobs.clock
    if fast:
        replay = FastReplay(
            series=window,
            start_ms=start_ms,
            clock=clock,
            market=market,
            engine=engine,
            open_orders=paper.reachable_orders,
            funding=funding,
            jobs=jobs,
        )
        await replay.run()
        return replay.stats.candles
    await market.run()
    await run_jobs_before(clock.now_ms() + 1)  # those due at the last close
    return market.stats.candles


async def run_backtest(
    settings: Settings,
    series: Mapping[str, CandleSeries],
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    detail: Mapping[str, CandleSeries] | None = None,
    fast: bool = True,
    provider: SignalProvider | None = None,
    funding: Mapping[str, FundingRates] | None = None,
    rules: Mapping[str, RulesInForce] | None = None,
    sources: Sources | None = None,
    jobs: Sequence[JobSpec] = JOBS,
    walk_forward: WalkForward | None = None,
) -> BacktestResult:
    """Run the engine over ``series`` (whole history used for warm-up, trading from start_ms).

    ``fast`` skips candles that provably change nothing (``FastReplay``); ``fast=False`` sends
    every candle through the full path, as demo and run do. Both give the same trades.
    ``detail`` must be strictly finer than the strategy timeframe and divide it (anything else
    is refused). ``provider`` replaces the configured signal provider (see ``build_engine``).
    ``funding`` (perps) is settled on open positions at each funding time; without it funding
    is not modelled. ``rules``: each symbol's market rules (None: the settings' override, else
    the settings' fallback; ``qt backtest`` passes stored or inferred ones, see
    ``bot.market_rules``). Every symbol needs candles in the range, and detail and funding
    something there, or it is refused before the run (``bot.backtest_window``; ``sources``
    names the files in that message). ``jobs``: the specs fired on simulated time (those with
    ``in_backtest``; ``jobs.simulated``), in both replays alike. ``walk_forward`` (with its
    ``EnsembleProvider``) is the learning manager on simulated time (its ``learning`` job;
    ``bot.walk_forward``): every prediction comes from members trained on candles closed
    before it.
    """
    timeframe = _check_inputs(settings, series, detail, funding)
    check_window(
        series, start_ms=start_ms, end_ms=end_ms, detail=detail, funding=funding, sources=sources
    )
    settings = settings.with_market(list(series), timeframe)
    window = {s: ser.between(None, end_ms) for s, ser in series.items()}
    trade_from = trading_start_ms(window, start_ms)
    ensemble = ensemble_in(provider)
    if ensemble is not None:
        ensemble.refuse_in_sample(trade_from)  # a model scored on what it was trained on
    clock = SimClock(trade_from)
    storage = MemoryStorage()
    bus = EventBus()  # no audit sink: a backtest's storage is thrown away with it
    seen = _Collected(bus)
    book = rules_book(settings)
    book.use(rules if rules is not None else resolved(settings, series))
    paper = paper_exchange(settings, storage, clock, book)
    trading_state = TradingStateService(storage.state, bus, clock)
    store = policy_store(settings, storage, bus, clock)
    await store.start()
    await store.announce()
    engine = build_engine(
        settings,
        clock=clock,
        bus=bus,
        exchange=paper,
        trading_state=trading_state,
        provider=provider,
        book=book,
        funding=None if not funding else _funding_lookup(funding),
        policy=store.current,
    )
    brains = build_brains(
        settings, engine=engine, store=store, storage=storage, bus=bus, clock=clock, record=False
    )
    for s in window.values():
        engine.signals.seed(s)  # causal provider: one pass over the whole series
    universe = None
    if settings.universe.dynamic:  # point in time: each refresh sees the candles closed by then
        engine.universe, changes = await universe_from_history(
            bus,
            window,
            settings.universe.rules(settings.trading.quote_currency),
            start_ms=trade_from,
            end_ms=max((int(s.ts_ms[-1]) for s in window.values() if len(s)), default=0)
            + timeframe_to_ms(timeframe),
            every_ms=settings.universe.refresh_ms,
        )
        universe = engine.universe.summary(changes)
    due, run_jobs_before = _simulated_jobs(
        jobs,
        settings,
        engine=engine,
        paper=paper,
        storage=storage,
        bus=bus,
        clock=clock,
        walk_forward=walk_forward,
        brains=brains,
    )
    if walk_forward is not None:  # the manager, its registry and its worker processes
        await walk_forward.start(
            window=window, clock=clock, bus=bus, storage=storage, engine=engine
        )
    market = MarketService(
        feed=ReplayFeed(
            window,
            clock,
            start_ms=trade_from,
            drive_clock=True,
            before_advance=run_jobs_before,
        ),
        clock=clock,
        candles=None,  # the candles come from files; storing them again is wasted work
        bus=bus,
        source="backtest",
        timeframe=timeframe,
        venue=paper,
        detail=detail,  # the paper exchange fills against these, one finer candle at a time
        funding=funding,
    )
    market.on_candle(engine.on_candle, before_fills=engine.before_fills)
    await paper.start()
    candles = await _replay(
        fast,
        window=window,
        start_ms=trade_from,
        market=market,
        engine=engine,
        paper=paper,
        funding=funding,
        jobs=due,
        run_jobs_before=run_jobs_before,
        walk_forward=walk_forward,
    )
    if bus.handler_failures:
        raise InvariantViolation(f"{bus.handler_failures} event handler(s) failed; see the log")
    fills = tuple(await storage.fills.list_fills())
    orders = tuple(await storage.orders.list_all())
    positions = await paper.fetch_positions()
    await paper.stop()
    ts, equity = equity_curve(
        fills,
        window,
        starting_balance=settings.paper.starting_balance,
        market_type=settings.exchange.market_type,
        start_ms=trade_from,
        cash_flows=[(e.funding_ms, e.cash) for e in seen.settled],
    )
    curve = EquityCurve.from_columns(ts, equity)
    benchmarks = tuple(
        BenchmarkSeries(symbol=sym, close=align_close(s, ts - timeframe_to_ms(timeframe)))
        for sym, s in window.items()
    )
    trades = tuple(engine.closed_trades)
    fees = sum((f.fee for f in fills), Decimal(0))
    metrics = compute_metrics(
        BacktestInput(
            curve=curve,
            starting_balance=settings.paper.starting_balance,
            trades=trades,
            fees_paid=fees,
            timeframe=timeframe,
            benchmarks=benchmarks,
            funding=sum((e.cash for e in seen.settled), Decimal(0)) if funding else None,
            symbols=tuple(window),
        )
    )
    return BacktestResult(
        metrics=metrics,
        trades=trades,
        fills=fills,
        orders=orders,
        curve=curve,
        benchmarks=benchmarks,
        candles=candles,
        open_positions=len(positions),
        stranded=_stranded(positions, window),
        events=bus.published,
        funding_events=len(seen.settled),
        detail_fallbacks=market.stats.detail_fallbacks,
        symbol_failures=tuple(seen.failed),
        universe=universe,
        job_runs=tuple(due.runs),
        regime_changes=tuple(seen.regimes),
        selections=tuple(seen.selections),
        denials=dict(Counter(e.reason for e in seen.denied)),
        brain_events=tuple(seen.brains),
        window=window,
    )
