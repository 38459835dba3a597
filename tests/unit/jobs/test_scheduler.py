from __future__ import annotations

import asyncio

import pytest

from core.clock import SimClock
from core.domain.events import Event
from core.services.bus import EventBus
from jobs.registry import JOBS, JobContext, JobSpec
from jobs.scheduler import MIN_WALL_INTERVAL_S, JobScheduler, wall_interval_s


def test_intervals_scale_with_market_speed() -> None:
    spec = JobSpec(job_id="x", every_market_s=3600, target=_ok)
    assert wall_interval_s(spec, 1.0) == 3600
    assert wall_interval_s(spec, 7200.0) == 0.5
    assert wall_interval_s(spec, 3600.0 * 1e6) == MIN_WALL_INTERVAL_S  # clamped, not a storm
    with pytest.raises(ValueError, match="speed"):
        wall_interval_s(spec, 0)


def test_registry_ids_unique() -> None:
    ids = [s.job_id for s in JOBS]
    assert len(ids) == len(set(ids))


async def _ok(_ctx: JobContext) -> str:
    return "fine"


async def _fails(_ctx: JobContext) -> str:
    raise RuntimeError("job broke")


async def _idle(_ctx: JobContext) -> str:
    return ""  # nothing to report


async def test_run_job_publishes_outcome_and_survives_failure() -> None:
    events: list[Event] = []

    async def record(e: Event) -> None:
        events.append(e)

    bus = EventBus()
    bus.subscribe("job.*", record)
    specs = [
        JobSpec(job_id="good", every_market_s=60, target=_ok),
        JobSpec(job_id="bad", every_market_s=60, target=_fails),
        JobSpec(job_id="idle", every_market_s=60, target=_idle),
    ]
    sched = JobScheduler(specs, JobContext(portfolio=None), bus=bus, clock=SimClock(9))  # type: ignore[arg-type]
    for spec in specs:
        await sched.run_job(spec)
    payloads = [(e.job_id, e.ok, e.detail, e.ts_ms) for e in events]  # type: ignore[attr-defined]
    assert payloads == [("good", True, "fine", 9), ("bad", False, "RuntimeError: job broke", 9)]
    assert sched.runs == {"good": 1, "bad": 1, "idle": 1}  # the idle run ran, unaudited


async def test_scheduler_fires_on_accelerated_time_and_stops_cleanly() -> None:
    fired = asyncio.Event()

    async def target(_ctx: JobContext) -> str:
        fired.set()
        return "ran"

    spec = JobSpec(job_id="fast", every_market_s=3600, target=target)
    sched = JobScheduler(
        [spec, JobSpec(job_id="off", every_market_s=1, target=_fails, enabled=False)],
        JobContext(portfolio=None),
        bus=EventBus(),
        clock=SimClock(),  # type: ignore[arg-type]
        speed=3600 * 50,
    )  # one market hour every 20 ms
    assert sched.job_ids == ["fast"]
    await sched.start()
    await asyncio.wait_for(fired.wait(), timeout=5)
    await sched.stop()
    assert sched.runs["fast"] >= 1


async def test_a_failed_jobs_stored_detail_has_no_secret() -> None:
    from core.redaction import REDACTED, Redactor, install_redactor, process_redactor
    from storage.memory import MemoryStorage

    key = "KEY-0123456789abcdef"

    async def network_blip(_ctx: JobContext) -> str:
        raise RuntimeError(f"htx GET https://api.hbdm.com/x?AccessKeyId={key} timed out")

    store = MemoryStorage()
    spec = JobSpec(job_id="equity_snapshot", every_market_s=3600, target=network_blip)
    sched = JobScheduler(
        [spec],
        JobContext(portfolio=None),  # type: ignore[arg-type]
        bus=EventBus(sink=store.events.append),
        clock=SimClock(9),
    )
    before = process_redactor()
    install_redactor(Redactor([key]))
    try:
        await sched.run_job(spec)
    finally:
        install_redactor(before)
    [event] = await store.events.list_events("job.")
    assert event.payload["detail"] == (
        f"RuntimeError: htx GET https://api.hbdm.com/x?AccessKeyId={REDACTED} timed out"
    )


async def test_a_job_allowed_two_runs_at_once_starts_the_next_while_one_waits() -> None:
    """The venue sync's runs overlap: one waiting on a symbol's slow venue must not keep the
    next from hearing another symbol's fill (each leaves what a running one works on)."""
    release, second = asyncio.Event(), asyncio.Event()
    runs = 0

    async def stuck_once(_ctx: JobContext) -> str:
        nonlocal runs
        runs += 1
        if runs == 1:
            await release.wait()
        else:
            second.set()
        return ""

    spec = JobSpec(job_id="sync", every_market_s=3600, target=stuck_once, max_instances=2)
    sched = JobScheduler(
        [spec],
        JobContext(portfolio=None),  # type: ignore[arg-type]
        bus=EventBus(),
        clock=SimClock(),  # type: ignore[arg-type]
        speed=3600 * 50,
    )
    await sched.start()
    await asyncio.wait_for(second.wait(), timeout=5)  # while the first still waits
    release.set()
    await sched.stop()
    [venue_sync] = [s for s in JOBS if s.job_id == "venue_sync"]
    assert venue_sync.max_instances > 1
    assert {s.max_instances for s in JOBS if s.job_id != "venue_sync"} == {1}
