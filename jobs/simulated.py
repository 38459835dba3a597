"""Job specs fired on a backtest's simulated time (``qt backtest``), one mechanism with the
scheduler: the same specs, the same run-and-publish.

Each job that applies (``in_backtest`` and ``runs_in``) fires every interval from the
backtest's start, like APScheduler's IntervalTrigger. The replay decides when: a job due at T
runs after every candle closing at or before T was handled and before any later one, with the
clock moved to T. Every due time runs (no coalescing): a replay has no wall clock to fall
behind, and skipping a run would make a fast and a full replay differ.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.clock import SimClock
from core.domain.events import EquityRecorded, Event, JobRan, RiskAssessed, StrategyReviewed
from core.services.bus import EventBus
from jobs.registry import JobContext, JobSpec
from jobs.running import run_and_publish

# What a job publishes that changes nothing the engine acts on.
_REPORTS = frozenset(e.topic for e in (RiskAssessed, StrategyReviewed, JobRan, EquityRecorded))


class SimulatedJobs:
    """The backtest's jobs on ``clock`` (implements ``core.services.due_jobs.DueJobs``)."""

    def __init__(
        self,
        specs: Sequence[JobSpec],
        ctx: JobContext,
        *,
        bus: EventBus,
        clock: SimClock,
        start_ms: int,
    ) -> None:
        self._specs = [s for s in specs if s.in_backtest and s.runs_in(ctx)]
        self._every_ms = [round(s.interval_s(ctx) * 1000) for s in self._specs]
        for spec, every_ms in zip(self._specs, self._every_ms, strict=True):
            if every_ms <= 0:
                raise ValueError(f"job {spec.job_id} needs an interval > 0, was {every_ms} ms")
        self._next_ms = [start_ms + every for every in self._every_ms]
        self._ctx = ctx
        self._bus = bus
        self.clock = clock
        self.runs: list[tuple[str, int]] = []  # (job id, simulated time) of every run
        self.signals_changed = False  # whether the last run_due ran a job that may change them
        # Whether the last run_due published anything but a report (a new policy, an order, an
        # exposure cut): what the engine watches for may have moved, so the replay plans its
        # candles again.
        self.policy_changed = False

    async def _on_event(self, event: Event) -> None:
        if event.topic not in _REPORTS:
            self.policy_changed = True

    @property
    def job_ids(self) -> list[str]:
        """Return the ids of the jobs that fire."""
        return [s.job_id for s in self._specs]

    def next_due_ms(self) -> int | None:
        """Return when the next job is due (None: no job fires)."""
        return min(self._next_ms, default=None)

    async def run_due(self, until_ms: int) -> int:
        """Run every job due at or before ``until_ms`` in time order (ties in spec order), the
        clock moved to each due time; return how many ran."""
        ran = 0
        self.signals_changed = self.policy_changed = False
        while (due := self.next_due_ms()) is not None and due <= until_ms:
            if due > self.clock.now_ms():
                self.clock.advance_to(due)
            for k, spec in enumerate(self._specs):
                if self._next_ms[k] == due:
                    self._next_ms[k] += self._every_ms[k]
                    # Listening to everything only while a job runs: between runs every
                    # event still reaches only those who want it (EventBus.wants).
                    stop_listening = self._bus.subscribe(
                        "*", self._on_event, name="simulated_jobs.on_event"
                    )
                    try:
                        await run_and_publish(spec, self._ctx, bus=self._bus, clock=self.clock)
                    finally:
                        stop_listening()
                    self.runs.append((spec.job_id, due))
                    self.signals_changed |= spec.changes_signals
                    ran += 1
        return ran
