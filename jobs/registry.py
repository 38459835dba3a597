"""The declarative list of scheduled jobs: id, how often in MARKET time, target, enabled.

Intervals are in market seconds so the demo can run them accelerated (the scheduler divides by the
clock's speed) and a backtest can fire them on simulated time. Targets are a few lines that call
one service; they must be safe to run twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core.clock import Clock
from core.services.portfolio import PortfolioService


@dataclass(frozen=True, slots=True, kw_only=True)
class JobContext:
    """The services jobs may call. Built once by the composition root.

    ``venue_sync`` is set when the venue does not report fills by itself (a live exchange);
    it returns how many events it published. ``universe_refresh`` is set with a dynamic
    universe (``QT__UNIVERSE__MODE=volume``), run every ``universe_every_s`` market seconds.
    """

    portfolio: PortfolioService
    venue_sync: Callable[[], Awaitable[int]] | None = None
    # Fetches the venue's market rules again (``qt run``); None where there is no venue.
    market_rules: Callable[[], Awaitable[str]] | None = None
    universe_refresh: Callable[[], Awaitable[str]] | None = None
    universe_every_s: float = 0.0
    clock: Clock | None = None  # market time (simulated in a backtest), for targets that stamp
    # One brains cycle: the Risk Brain's assessment, then the CEO's mode and its actions
    # (core.services.brains), every ``assess_every_s`` market seconds; None: brains off.
    brains_cycle: Callable[[], Awaitable[str]] | None = None
    assess_every_s: float = 0.0
    # Adopts a policy version another process wrote (``qt mode set``); None: no store.
    policy_refresh: Callable[[], Awaitable[bool]] | None = None
    # The Strategy Brain's review (core.services.strategy_service), every
    # ``review_every_s`` market seconds; None: brains off.
    strategy_review: Callable[[], Awaitable[str]] | None = None
    review_every_s: float = 24 * 3600.0
    # Pushes the daily summary to the chat front ends (bot.chat); None: none configured.
    daily_report: Callable[[], Awaitable[str]] | None = None
    # The health monitor's check (core.services.health); None: no monitor.
    health_check: Callable[[], Awaitable[str]] | None = None
    # The learning manager's check (core.services.learning: record, shadows, drift, the due
    # check) every ``learning_every_s`` market seconds; None: no manager. In a backtest it is
    # the walk-forward (qt backtest --walk-forward, qt evaluate; bot.walk_forward).
    learning_check: Callable[[], Awaitable[str]] | None = None
    learning_every_s: float = 3600.0


JobTarget = Callable[[JobContext], Awaitable[str]]


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    """One scheduled job. The target returns a one-line summary for the audit trail ("" when
    the run had nothing to report: no audit row)."""

    job_id: str
    every_market_s: float
    target: JobTarget
    enabled: bool = True
    description: str = ""
    applies: Callable[[JobContext], bool] | None = None  # None: every process runs it
    # The interval from the process's settings (None: every_market_s).
    every_from: Callable[[JobContext], float] | None = None
    # Fired on simulated time by qt backtest too (jobs.simulated); jobs that talk to a venue
    # or only record the account stay out of a backtest.
    in_backtest: bool = False
    # A run may change the signals (the walk-forward retrain): a backtest computes them again
    # after it. Other jobs change what the engine does with them, never the signals.
    changes_signals: bool = False
    # The interval is wall seconds, not market ones: the process's own health is checked as
    # often in an accelerated demo as live.
    wall_time: bool = False
    # Runs of it at once: one unless a run may wait long on one thing that the next run leaves
    # alone and goes on without (the venue sync: see its spec).
    max_instances: int = 1

    def runs_in(self, ctx: JobContext) -> bool:
        """Return whether this process schedules the job."""
        return self.enabled and (self.applies is None or self.applies(ctx))

    def interval_s(self, ctx: JobContext | None = None) -> float:
        """Return the market seconds between two runs in the process of ``ctx``."""
        if self.every_from is None or ctx is None:
            return self.every_market_s
        return self.every_from(ctx)


async def snapshot_equity(ctx: JobContext) -> str:
    """Value the account and record an equity snapshot."""
    snap = await ctx.portfolio.snapshot()
    return f"equity {snap.equity:.2f}"


async def sync_venue(ctx: JobContext) -> str:
    """Ask the live venue what happened to our orders (fills, its own cancels); report only
    when something did ("" keeps the quiet polls out of the audit trail)."""
    if ctx.venue_sync is None:
        return "no venue to sync"
    events = await ctx.venue_sync()
    return f"{events} event(s) from the venue" if events else ""


async def refresh_policy(ctx: JobContext) -> str:
    """Adopt a policy version written by another process (an operator's ``qt mode set``)."""
    if ctx.policy_refresh is None:
        return "no policy store"
    return "adopted a newer policy version" if await ctx.policy_refresh() else ""


def _check_service(service: str) -> None:
    if service not in JobContext.__dataclass_fields__:  # a typo fails at import, not at 3 am
        raise TypeError(f"JobContext has no service {service!r}")


def _delegate(service: str, missing: str) -> JobTarget:
    """Return a target that calls the context's ``service`` (a one-line summary back), or
    says ``missing`` where the process has none (its spec's ``applies`` keeps it off then)."""
    _check_service(service)

    async def run(ctx: JobContext) -> str:
        call: Callable[[], Awaitable[str]] | None = getattr(ctx, service)
        return missing if call is None else await call()

    run.__name__ = f"call_{service}"
    return run


def _has(service: str) -> Callable[[JobContext], bool]:
    """Return whether a process's context has ``service`` (the job runs only then)."""
    _check_service(service)
    return lambda ctx: getattr(ctx, service) is not None


JOBS: tuple[JobSpec, ...] = (
    JobSpec(
        job_id="equity_snapshot",
        every_market_s=3600,
        target=snapshot_equity,
        description="record account equity every market hour",
    ),
    JobSpec(
        job_id="venue_sync",
        every_market_s=10,
        target=sync_venue,
        applies=_has("venue_sync"),  # a live venue: it fills on its own
        description="live venue: report fills and venue cancels of our orders every 10 s",
        # A run waiting on one symbol's slow venue (retried with backoff: minutes at real
        # timeouts) must not keep the next from hearing another symbol's fresh fill: the
        # next run leaves the symbols a running one works on (Engine.sync_with_venue), so
        # runs at once never outnumber the symbols stuck at once.
        max_instances=8,
    ),
    JobSpec(
        job_id="market_rules",
        every_market_s=6 * 3600,
        target=_delegate("market_rules", "no venue to fetch market rules from"),
        applies=_has("market_rules"),
        description="qt run: fetch each symbol's tick, step and minimums again every 6 h",
    ),
    JobSpec(
        job_id="universe_refresh",
        every_market_s=24 * 3600,
        every_from=lambda ctx: ctx.universe_every_s,
        target=_delegate("universe_refresh", "no dynamic universe"),
        applies=_has("universe_refresh"),
        description="dynamic universe: top N by volume again every QT__UNIVERSE__REFRESH_HOURS",
    ),
    JobSpec(
        job_id="learning",
        every_market_s=3600,
        every_from=lambda ctx: ctx.learning_every_s,
        target=_delegate("learning_check", "no learning manager"),
        applies=_has("learning_check"),
        in_backtest=True,  # the walk-forward: the manager replayed (bot.walk_forward)
        changes_signals=True,  # a promotion or a rollback serves other members
        description="learning manager: record predictions, judge shadows, drift, retrain when "
        "due, every QT__LEARNING__CHECK_EVERY_HOURS (backtests: QT__MODELS__RETRAIN_HOURS)",
    ),
    JobSpec(
        job_id="risk_assessment",
        every_market_s=3600,
        every_from=lambda ctx: ctx.assess_every_s,
        target=_delegate("brains_cycle", "brains off"),
        applies=_has("brains_cycle"),
        in_backtest=True,
        description="Risk Brain, then CEO Brain, enforced: every QT__BRAINS__ASSESS_EVERY_MINUTES",
    ),
    JobSpec(
        job_id="strategy_review",
        every_market_s=24 * 3600,
        every_from=lambda ctx: ctx.review_every_s,
        target=_delegate("strategy_review", "brains off"),
        applies=_has("strategy_review"),
        in_backtest=True,
        description="Strategy Brain: review the records every QT__BRAINS__REVIEW_EVERY_HOURS",
    ),
    JobSpec(
        job_id="policy_refresh",
        every_market_s=10,
        target=refresh_policy,
        applies=_has("policy_refresh"),
        description="adopt a policy an operator set from another process (qt mode set)",
    ),
    JobSpec(
        job_id="daily_report",
        every_market_s=24 * 3600,
        target=_delegate("daily_report", "no chat front end"),
        applies=_has("daily_report"),
        wall_time=True,  # a person's day: not every 12 s of an accelerated demo
        description="push the daily summary (P&L, trades, risk, mode, equity chart) every wall day",
    ),
    JobSpec(
        job_id="health",
        every_market_s=60,
        target=_delegate("health_check", "no health monitor"),
        applies=_has("health_check"),
        wall_time=True,
        description="health monitor every wall minute: data, venue, models, loop, db, disk",
    ),
)
