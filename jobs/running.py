"""Run one job and publish its outcome: shared by the scheduler and simulated time."""

from __future__ import annotations

import logging

from core.clock import Clock
from core.domain.events import JobRan
from core.errors import DependencyError
from core.services.bus import EventBus
from jobs.registry import JobContext, JobSpec

log = logging.getLogger(__name__)


async def run_and_publish(spec: JobSpec, ctx: JobContext, *, bus: EventBus, clock: Clock) -> None:
    """Run ``spec`` once and publish ``JobRan`` (ok or failed); a run that succeeded with
    nothing to report (its target returned "") publishes nothing. A failing job is logged,
    never raised: the caller goes on. Something the job needs being unavailable (the venue
    down, the database locked or full: ``DependencyError``) is said in one line: the error
    names what and where, and its traceback would bury it once a run."""
    try:
        detail = await spec.target(ctx)
        ok = True
    except DependencyError as e:
        log.error("job %s failed: %s", spec.job_id, e)
        detail, ok = f"{type(e).__name__}: {e}", False
    except Exception as e:  # a failing job must not kill the scheduler
        log.exception("job %s failed", spec.job_id)
        detail, ok = f"{type(e).__name__}: {e}", False
    if ok and not detail:
        return
    await bus.publish(JobRan(ts_ms=clock.now_ms(), job_id=spec.job_id, ok=ok, detail=detail))
