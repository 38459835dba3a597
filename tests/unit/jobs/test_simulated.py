from __future__ import annotations

import logging

import pytest

from core.clock import SimClock
from core.domain.events import Event, JobRan, ProcessStopped
from core.errors import StorageUnavailable
from core.services.bus import EventBus
from jobs.registry import JOBS, JobContext, JobSpec
from jobs.running import run_and_publish
from jobs.simulated import SimulatedJobs

HOUR_MS = 3_600_000


def test_no_registered_job_of_a_venue_or_the_account_fires_in_a_backtest() -> None:
    off = {"equity_snapshot", "venue_sync", "market_rules", "universe_refresh"}
    assert {s.job_id for s in JOBS if not s.in_backtest} >= off


async def test_jobs_fire_every_interval_from_the_start_with_the_clock_at_their_due_time() -> None:
    clock = SimClock(1_000)
    bus = EventBus()
    events: list[Event] = []

    async def record(e: Event) -> None:
        events.append(e)

    bus.subscribe("job.*", record)
    stamps: list[tuple[str, int]] = []

    def target(name: str, detail: str):  # type: ignore[no-untyped-def]
        async def run(ctx: JobContext) -> str:
            assert ctx.clock is not None
            stamps.append((name, ctx.clock.now_ms()))
            return detail

        return run

    specs = [
        JobSpec(job_id="two", every_market_s=7200, target=target("two", "t"), in_backtest=True),
        JobSpec(job_id="one", every_market_s=3600, target=target("one", ""), in_backtest=True),
        JobSpec(job_id="live", every_market_s=60, target=target("live", "x")),  # not in backtests
        JobSpec(
            job_id="off",
            every_market_s=60,
            target=target("off", "x"),
            in_backtest=True,
            enabled=False,
        ),
    ]
    jobs = SimulatedJobs(
        specs,
        JobContext(portfolio=None, clock=clock),
        bus=bus,
        clock=clock,
        start_ms=1_000,  # type: ignore[arg-type]
    )
    assert jobs.job_ids == ["two", "one"]
    assert jobs.next_due_ms() == 1_000 + HOUR_MS
    assert await jobs.run_due(1_000 + HOUR_MS - 1) == 0  # nothing due yet
    assert await jobs.run_due(1_000 + 2 * HOUR_MS) == 3
    # In time order, ties in spec order; the clock at each one's due time.
    assert stamps == [
        ("one", 1_000 + HOUR_MS),
        ("two", 1_000 + 2 * HOUR_MS),
        ("one", 1_000 + 2 * HOUR_MS),
    ]
    assert clock.now_ms() == 1_000 + 2 * HOUR_MS
    assert jobs.next_due_ms() == 1_000 + 3 * HOUR_MS
    # JobRan as the scheduler publishes it: a run with nothing to report stays out of the trail.
    assert [(e.job_id, e.ts_ms) for e in events if isinstance(e, JobRan)] == [
        ("two", 1_000 + 2 * HOUR_MS)
    ]
    assert jobs.runs == [
        ("one", 1_000 + HOUR_MS),
        ("two", 1_000 + 2 * HOUR_MS),
        ("one", 1_000 + 2 * HOUR_MS),
    ]


async def test_a_failing_job_is_published_and_the_next_still_runs() -> None:
    clock = SimClock(0)
    bus = EventBus()
    events: list[Event] = []

    async def record(e: Event) -> None:
        events.append(e)

    async def broken(_ctx: JobContext) -> str:
        raise RuntimeError("no model")

    bus.subscribe("job.*", record)
    spec = JobSpec(job_id="retrain", every_market_s=3600, target=broken, in_backtest=True)
    jobs = SimulatedJobs([spec], JobContext(portfolio=None), bus=bus, clock=clock, start_ms=0)  # type: ignore[arg-type]
    assert await jobs.run_due(2 * HOUR_MS) == 2
    assert [(e.ok, e.detail) for e in events if isinstance(e, JobRan)] == [
        (False, "RuntimeError: no model")
    ] * 2


async def test_jobs_listen_to_every_event_only_while_one_runs() -> None:
    # Between runs the jobs make no event wanted (a backtest builds only what someone hears);
    # during a run whatever a job publishes but a report says the policy may have changed.
    clock = SimClock(0)
    bus = EventBus()
    wanted_inside: list[bool] = []

    async def cut(ctx: JobContext) -> str:
        wanted_inside.append(bus.wants(ProcessStopped.topic))
        await bus.publish(ProcessStopped(ts_ms=clock.now_ms(), reason="a job's event"))
        return ""

    spec = JobSpec(job_id="cut", every_market_s=3600, target=cut, in_backtest=True)
    jobs = SimulatedJobs(
        [spec],
        JobContext(portfolio=None, clock=clock),  # type: ignore[arg-type]
        bus=bus,
        clock=clock,
        start_ms=0,
    )
    assert not bus.wants(ProcessStopped.topic)
    assert await jobs.run_due(HOUR_MS) == 1
    assert wanted_inside == [True] and jobs.policy_changed
    assert not bus.wants(ProcessStopped.topic) and not bus.wants(JobRan.topic)
    await bus.publish(ProcessStopped(ts_ms=1, reason="between runs"))
    assert await jobs.run_due(HOUR_MS + 1) == 0 and not jobs.policy_changed


async def test_a_job_whose_database_is_unavailable_says_so_in_one_line_a_bug_keeps_its_trace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def full(_ctx: JobContext) -> str:
        raise StorageUnavailable("cannot write the database /d/qt.sqlite: the disk is full")

    async def bug(_ctx: JobContext) -> str:
        raise KeyError("equity")

    events: list[Event] = []

    async def record(e: Event) -> None:
        events.append(e)

    bus = EventBus()
    bus.subscribe("job.*", record)
    ctx = JobContext(portfolio=None)  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR):
        await run_and_publish(
            JobSpec(job_id="snap", every_market_s=60, target=full), ctx, bus=bus, clock=SimClock(0)
        )
        await run_and_publish(
            JobSpec(job_id="report", every_market_s=60, target=bug), ctx, bus=bus, clock=SimClock(0)
        )
    snap, report = caplog.records
    assert snap.getMessage() == (
        "job snap failed: cannot write the database /d/qt.sqlite: the disk is full"
    )
    assert snap.exc_info is None  # no traceback for a disk that is full
    assert report.exc_info is not None and report.exc_info[0] is KeyError
    assert [(e.ok, e.detail.split(":")[0]) for e in events if isinstance(e, JobRan)] == [
        (False, "StorageUnavailable"),
        (False, "KeyError"),
    ]
