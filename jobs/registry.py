"""The declarative list of scheduled jobs: id, how often in MARKET time, target, enabled.

Intervals are in market seconds so the demo can run them accelerated (the scheduler divides by the
clock's speed) and a backtest can fire them on simulated time. Targets are a few lines that call
one service; they must be safe to run twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core.services.portfolio import PortfolioService


@dataclass(frozen=True, slots=True, kw_only=True)
class JobContext:
    """The services jobs may call. Built once by the composition root."""

    portfolio: PortfolioService


JobTarget = Callable[[JobContext], Awaitable[str]]


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    """One scheduled job. The target returns a one-line summary for the audit trail."""

    job_id: str
    every_market_s: float
    target: JobTarget
    enabled: bool = True
    description: str = ""


async def snapshot_equity(ctx: JobContext) -> str:
    """Value the account and record an equity snapshot."""
    snap = await ctx.portfolio.snapshot()
    return f"equity {snap.equity:.2f}"


JOBS: tuple[JobSpec, ...] = (
    JobSpec(
        job_id="equity_snapshot",
        every_market_s=3600,
        target=snapshot_equity,
        description="record account equity every market hour",
    ),
)
