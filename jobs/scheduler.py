"""One APScheduler ``AsyncIOScheduler`` on the process's loop, built from job specs.

Every job: coalesce, one instance at a time (more where its spec says: the venue sync), a
misfire grace period, UTC. Each run publishes ``JobRan`` (ok or failed) so the audit trail
shows what ran when, except a run that succeeded with nothing to report (its target returned
""): a 10-second poll must not fill the trail. A failing job is logged and the scheduler goes
on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from core.clock import Clock
from core.services.bus import EventBus
from jobs.registry import JobContext, JobSpec
from jobs.running import run_and_publish

MISFIRE_GRACE_S = 30
# At very high replay speeds a market interval shrinks below what a scheduler can honour;
# runs are then spaced at least this far apart in wall time (and coalesced).
MIN_WALL_INTERVAL_S = 0.05


def wall_interval_s(spec: JobSpec, speed: float, ctx: JobContext | None = None) -> float:
    """Return the wall-clock interval for a job when market time runs ``speed`` times faster
    (in the process of ``ctx``, whose settings may set it)."""
    if speed <= 0:
        raise ValueError(f"speed must be > 0, was {speed}")
    if spec.wall_time:
        return max(MIN_WALL_INTERVAL_S, spec.interval_s(ctx))
    return max(MIN_WALL_INTERVAL_S, spec.interval_s(ctx) / speed)


class JobScheduler:
    """Run the enabled job specs on the event loop; ``start``/``stop`` like every component."""

    def __init__(
        self,
        specs: Sequence[JobSpec],
        ctx: JobContext,
        *,
        bus: EventBus,
        clock: Clock,
        speed: float = 1.0,
    ) -> None:
        self._specs = [s for s in specs if s.runs_in(ctx)]
        self._ctx = ctx
        self._bus = bus
        self._clock = clock
        self._speed = speed
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self.runs: dict[str, int] = {}
        self._running: set[asyncio.Task[None]] = set()

    @property
    def job_ids(self) -> list[str]:
        """Return the ids of the scheduled jobs."""
        return [s.job_id for s in self._specs]

    async def run_job(self, spec: JobSpec) -> None:
        """Run one job now and publish its outcome."""
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            await self._run(spec)
        finally:
            if task is not None:
                self._running.discard(task)

    async def _run(self, spec: JobSpec) -> None:
        self.runs[spec.job_id] = self.runs.get(spec.job_id, 0) + 1
        await run_and_publish(spec, self._ctx, bus=self._bus, clock=self._clock)

    async def start(self) -> None:
        """Add every job and start the scheduler on the running loop."""
        for spec in self._specs:
            self._scheduler.add_job(
                self.run_job,
                IntervalTrigger(
                    seconds=wall_interval_s(spec, self._speed, self._ctx), timezone=UTC
                ),
                args=[spec],
                id=spec.job_id,
                coalesce=True,
                max_instances=spec.max_instances,
                misfire_grace_time=MISFIRE_GRACE_S,
            )
        self._scheduler.start()

    async def stop(self) -> None:
        """Stop scheduling, let jobs that are mid-run finish, then shut the scheduler down.

        APScheduler 3 cancels in-flight coroutine jobs on shutdown, so pause and wait first.
        """
        if not self._scheduler.running:
            return
        self._scheduler.pause()
        if self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)
        self._scheduler.shutdown(wait=False)
