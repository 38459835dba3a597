"""The health monitor: each check's verdict on hand-made inputs, alerts when a check turns bad
and when it is fine again, the bad checks handed to the Risk Brain, the loop-lag probe."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from core.clock import SimClock
from core.domain.events import AlertRaised, Event
from core.ports import StateKey
from core.services.bus import EventBus
from core.services.health import (
    HealthConfig,
    HealthInput,
    HealthMonitor,
    HealthSources,
    LoopLagProbe,
    Status,
    check_health,
)
from storage.memory import MemoryStorage

HOUR_MS = 3_600_000
NOW = 1_704_067_200_000


def verdicts(inp: HealthInput) -> dict[str, Status]:
    return {c.name: c.status for c in check_health(inp).checks}


def test_each_check_grades_what_it_sees() -> None:
    inp = HealthInput(
        now_ms=NOW,
        candle_ms=HOUR_MS,
        last_close_ms={"BTC/USDT": NOW - HOUR_MS, "ETH/USDT": NOW - 4 * HOUR_MS, "SOL/USDT": None},
        venue_error="",
        venue_s=0.3,
        trained_until_ms={"xgb": NOW - 20 * 86_400_000, "lgbm": NOW - 86_400_000},
        loop_lag_ms=400.0,
        database_error="",
        disk_free_mb=150.0,
    )
    got = verdicts(inp)
    assert got == {
        "data BTC/USDT": Status.OK,
        "data ETH/USDT": Status.BAD,  # 4 candles late: past the Risk Brain's 3
        "data SOL/USDT": Status.BAD,
        "venue": Status.OK,
        "model lgbm": Status.OK,
        "model xgb": Status.WARN,  # trained 20 days ago, past 14
        "event loop": Status.WARN,
        "database": Status.OK,
        "disk": Status.BAD,
    }
    report = check_health(inp)
    assert report.status is Status.BAD
    assert report.bad() == (
        "data ETH/USDT: newest candle 4.0 candles old",
        "data SOL/USDT: no candle yet",
        "disk: 150 MiB free",
    )
    worse = check_health(
        HealthInput(
            now_ms=NOW,
            candle_ms=HOUR_MS,
            last_close_ms={},
            venue_error="NetworkError: timed out",
            loop_lag_ms=5_000.0,
            database_error="StorageUnavailable: disk I/O error",
            config=HealthConfig(lag_bad_ms=1_000),
        )
    )
    assert {c.name: c.status for c in worse.checks} == {
        "venue": Status.BAD,
        "event loop": Status.BAD,
        "database": Status.BAD,
    }
    # nothing measured: nothing judged, all well
    assert check_health(HealthInput(now_ms=NOW, candle_ms=HOUR_MS, last_close_ms={})).status is (
        Status.OK
    )


class FlakyVenue:
    def __init__(self) -> None:
        self.down = False

    async def fetch(self) -> object:
        if self.down:
            raise ConnectionError("venue unreachable")
        return {}


async def test_the_monitor_alerts_on_a_change_and_feeds_the_risk_brain(tmp_path: Path) -> None:
    bus, seen, clock = EventBus(), list[Event](), SimClock(NOW)

    async def keep(e: Event) -> None:
        seen.append(e)

    bus.subscribe(AlertRaised.topic, keep)
    venue, closes = FlakyVenue(), {"BTC/USDT": NOW}
    monitor = HealthMonitor(
        HealthSources(
            symbols=lambda: ["BTC/USDT"],
            last_close_ms=closes.get,
            venue_probe=venue.fetch,
            state=MemoryStorage().state,
            data_dir=tmp_path,
        ),
        bus=bus,
        clock=clock,
        candle_ms=HOUR_MS,
    )
    assert (await monitor.check()).status is Status.OK and monitor.issues() == () and not seen
    venue.down = True
    await monitor.check()
    assert monitor.issues() == ("venue: ConnectionError: venue unreachable",)  # scored at once
    assert not seen  # one bad run: no alert yet (a blip)
    await monitor.check()
    await monitor.check()  # still down: one alert, not one a minute
    assert [(e.severity, e.title) for e in seen] == [("critical", "health: venue is bad")]  # type: ignore[attr-defined]
    venue.down = False
    clock.advance_to(NOW + 5 * HOUR_MS)  # and the candles stopped coming
    await monitor.check()
    await monitor.check()
    titles = [e.title for e in seen]  # type: ignore[attr-defined]
    assert titles[1:] == ["health: data BTC/USDT is bad", "health: venue is fine again"]
    # a check flipping every run alerts nothing more
    closes["BTC/USDT"] = NOW + 5 * HOUR_MS
    for k in range(10):
        venue.down = k % 2 == 0
        await monitor.check()
    assert [e.title for e in seen][3:] == ["health: data BTC/USDT is fine again"]  # type: ignore[attr-defined]


async def test_the_risk_brain_scores_the_bad_checks() -> None:
    from core.brains.risk import RiskInput, assess

    calm = assess(RiskInput(equity=10_000.0, peak_equity=10_000.0, positions=()))
    sick = assess(
        RiskInput(
            equity=10_000.0,
            peak_equity=10_000.0,
            positions=(),
            health_issues=("venue: ConnectionError",),
        )
    )
    assert dict(sick.components)["health"] == 50.0 and dict(calm.components)["health"] == 0.0
    assert sick.score > calm.score and any("health: venue" in n for n in sick.notes)


async def test_the_lag_probe_sees_a_blocked_loop() -> None:
    probe = LoopLagProbe(every_s=0.01)
    await probe.start()
    await asyncio.sleep(0.05)
    probe.take()
    time.sleep(0.15)  # the loop blocked (what a CPU-heavy call on it would do)
    await asyncio.sleep(0.03)
    lag = probe.take()
    await probe.stop()
    assert lag >= 100.0


def fault_monitor(
    faults: list[int],
    wall_s: list[float],
    bus: EventBus | None = None,
    state: MemoryStorage | None = None,
) -> HealthMonitor:
    """A monitor of the venue's fault count ``faults[0]`` alone, on the wall clock
    ``wall_s[0]`` (epoch seconds), storing its counts in ``state``'s store when given."""
    return HealthMonitor(
        HealthSources(
            symbols=lambda: [],
            last_close_ms=lambda _s: None,
            venue_faults=lambda: faults[0],
            state=None if state is None else state.state,
        ),
        bus=bus or EventBus(),
        clock=SimClock(NOW),
        candle_ms=HOUR_MS,
        epoch=lambda: wall_s[0],
    )


async def test_a_venue_failing_calls_that_retries_hide_raises_the_alert() -> None:
    """Retries hide each fault (the process stays up, the probe succeeds): the count of them
    in the last minute is what says the venue misbehaves; its end is said too."""
    from core.errors import TemporaryError
    from core.retry import retry

    bus, seen = EventBus(), list[Event]()

    async def keep(e: Event) -> None:
        seen.append(e)

    bus.subscribe(AlertRaised.topic, keep)
    faults = [0]

    async def flaky_then_fine() -> str:
        if faults[0] % 4 != 3:  # three faults, then an answer
            faults[0] += 1
            raise TemporaryError("503")
        faults[0] += 1
        return "ok"

    counted, wall = [0], [1_000.0]

    async def no_sleep(_s: float) -> None:
        return None

    async def one_call() -> None:
        def count(_e: object) -> None:
            counted[0] += 1

        await retry(flaky_then_fine, attempts=5, sleep=no_sleep, on_failure=count)

    monitor = fault_monitor(counted, wall, bus)
    assert verdicts_of(await monitor.check()) == {"venue faults": Status.OK}  # none yet
    for _ in range(2):
        wall[0] += 60.0  # the health job's minute
        for _ in range(4):
            await one_call()  # every call answers in the end: 12 faults hidden per minute
        report = await monitor.check()
        assert verdicts_of(report) == {"venue faults": Status.BAD}
    assert [(e.severity, e.title) for e in seen] == [("critical", "health: venue faults is bad")]  # type: ignore[attr-defined]
    assert "12 retried or failed call(s) in the last 60 s" in report.checks[0].detail
    for _ in range(2):  # quiet again twice
        wall[0] += 60.0
        await monitor.check()
    assert [e.title for e in seen][1:] == ["health: venue faults is fine again"]  # type: ignore[attr-defined]


async def test_venue_faults_are_counted_over_a_wall_minute_however_often_the_check_runs() -> None:
    """Checked every second (the chaos harness), twelve faults in a minute are as bad as when
    checked once a minute: the count is of the last minute, not of the last second."""
    faults, wall = [0], [0.0]
    monitor = fault_monitor(faults, wall)
    for second in range(1, 61):
        wall[0] = float(second)
        faults[0] += second % 5 == 0  # one fault every 5 s: 12 a minute
        report = await monitor.check()
    assert verdicts_of(report) == {"venue faults": Status.BAD}
    assert "12 retried" in report.checks[0].detail
    for second in range(61, 181):  # then none for two minutes: the minute slides past them
        wall[0] = float(second)
        report = await monitor.check()
    assert verdicts_of(report) == {"venue faults": Status.OK}
    assert "0 retried" in report.checks[0].detail


async def test_the_faults_of_a_start_count_in_the_first_check() -> None:
    """The adapter counts from the process's start: a start whose reads the venue faulted
    (retried until they answered) says so at its first checks, not only after a minute; a
    process restarted every few seconds against a misbehaving venue still raises the alert."""
    faults, wall = [11], [0.5]  # eleven faults before the monitor's first check
    bus, seen = EventBus(), list[Event]()

    async def keep(e: Event) -> None:
        seen.append(e)

    bus.subscribe(AlertRaised.topic, keep)
    monitor = fault_monitor(faults, wall, bus)
    assert "11 retried" in (await monitor.check()).checks[0].detail
    wall[0] = 1.5
    assert verdicts_of(await monitor.check()) == {"venue faults": Status.BAD}
    assert [e.title for e in seen] == ["health: venue faults is bad"]  # type: ignore[attr-defined]


def fault_check(report: object) -> tuple[Status, str]:
    [check] = [c for c in report.checks if c.name == "venue faults"]  # type: ignore[attr-defined]
    return check.status, check.detail


async def test_a_process_restarted_again_and_again_while_the_venue_faults_raises_the_alert() -> (
    None
):
    """Killed every 2.5 s (a supervisor restarts it; a start that gave up): each process sees
    3 faults and lives 2 checks, never 10 of its own. The window's counts are stored, and each
    new process takes up the last minute's: the fourth process raises the alert; one that
    starts after a quiet minute counts from nothing again."""
    storage, bus, seen = MemoryStorage(), EventBus(), list[Event]()

    async def keep(e: Event) -> None:
        seen.append(e)

    bus.subscribe(AlertRaised.topic, keep)
    wall = [1_000.0]
    for life in range(4):
        faults = [0]
        monitor = fault_monitor(faults, wall, bus, storage)  # a new process
        for total in (2, 3):  # two faults of its start, one more
            wall[0] += 1.0
            faults[0] = total
            report = await monitor.check()
        wall[0] += 0.5  # killed
        assert fault_check(report)[1].startswith(f"{3 * (life + 1)} retried")
    assert [e.title for e in seen] == ["health: venue faults is bad"]  # type: ignore[attr-defined]
    wall[0] += 60.0  # a quiet minute, then the next process
    monitor = fault_monitor([0], wall, bus, storage)
    assert fault_check(await monitor.check()) == (
        Status.OK,
        "0 retried or failed call(s) in the last 60 s",
    )


async def test_stored_fault_counts_that_cannot_be_read_count_as_none() -> None:
    storage = MemoryStorage()
    await storage.state.set(StateKey.VENUE_FAULTS, "{garbled")
    monitor = fault_monitor([4], [5.0], state=storage)
    assert fault_check(await monitor.check())[1].startswith("4 retried")
    stored = await storage.state.get(StateKey.VENUE_FAULTS)
    assert stored is not None and json.loads(stored) == [[5.0, 4]]  # written over, readable


async def test_a_check_a_moment_short_of_a_minute_after_the_last_does_not_count_two_minutes() -> (
    None
):
    """The scheduler runs the job a few milliseconds early now and then: the window's base is
    then still the previous check, not the one before it."""
    faults, wall = [0], [0.0]
    monitor = fault_monitor(faults, wall)
    await monitor.check()
    wall[0], faults[0] = 60.0, 8
    await monitor.check()
    wall[0], faults[0] = 119.99, 16  # 8 in this minute, 16 in two
    report = await monitor.check()
    assert "8 retried" in report.checks[0].detail
    assert verdicts_of(report) == {"venue faults": Status.WARN}


def verdicts_of(report: object) -> dict[str, Status]:
    return {c.name: c.status for c in report.checks}  # type: ignore[attr-defined]


async def test_fault_counts_stored_ahead_of_the_clock_do_not_keep_the_check_bad() -> None:
    """The wall clock went back (an NTP step, a host restored): counts stored at a time still
    ahead of it are not of the last minute; kept, they would hold the check bad (the Risk
    Brain's input) until the clock caught up, an hour here."""
    storage = MemoryStorage()
    await storage.state.set(StateKey.VENUE_FAULTS, json.dumps([[3_600.0 + 5.0, 50]]))
    faults, wall = [1], [5.0]
    monitor = fault_monitor(faults, wall, state=storage)
    assert fault_check(await monitor.check()) == (
        Status.OK,
        "1 retried or failed call(s) in the last 60 s",
    )


async def test_a_clock_stepped_back_in_a_running_process_does_not_hold_the_last_faults() -> None:
    """Twelve faults in the minute before the clock stepped back ten minutes: a minute of
    quiet after the step is quiet, not ten minutes more of a bad check."""
    faults, wall = [0], [1_000.0]
    monitor = fault_monitor(faults, wall)
    faults[0] = 12
    assert fault_check(await monitor.check())[0] is Status.BAD
    for second in range(400, 461):  # stepped back 600 s, then a quiet minute
        wall[0] = float(second)
        report = await monitor.check()
    assert fault_check(report) == (Status.OK, "0 retried or failed call(s) in the last 60 s")


async def test_stored_fault_counts_below_zero_do_not_hide_this_process_faults() -> None:
    storage = MemoryStorage()
    await storage.state.set(StateKey.VENUE_FAULTS, json.dumps([[4.0, -100]]))
    monitor = fault_monitor([12], [5.0], state=storage)
    assert fault_check(await monitor.check()) == (
        Status.BAD,
        "12 retried or failed call(s) in the last 60 s",
    )


class RefusingState:
    """A state store whose database is down: every read and write raises."""

    def __init__(self) -> None:
        self.writes = 0

    async def get(self, key: StateKey) -> str | None:
        raise ConnectionError("database down")

    async def set(self, key: StateKey, value: str) -> None:
        self.writes += 1
        raise ConnectionError("database down")


async def test_a_database_down_leaves_the_check_running_and_alerts_once() -> None:
    """Held: the fault counts neither read nor stored, each check still answers, still counts
    this process's faults, and says the database is bad once, not at every check."""
    bus, seen, state = EventBus(), list[Event](), RefusingState()

    async def keep(e: Event) -> None:
        seen.append(e)

    bus.subscribe(AlertRaised.topic, keep)
    faults, wall = [0], [0.0]
    monitor = HealthMonitor(
        HealthSources(
            symbols=lambda: [],
            last_close_ms=lambda _s: None,
            venue_faults=lambda: faults[0],
            state=state,
        ),
        bus=bus,
        clock=SimClock(NOW),
        candle_ms=HOUR_MS,
        epoch=lambda: wall[0],
    )
    for second in range(10):
        wall[0], faults[0] = float(second), 2 * second
        report = await monitor.check()
    assert verdicts_of(report) == {"venue faults": Status.BAD, "database": Status.BAD}
    assert state.writes == 20  # the probe's and the counts' each check
    titles = sorted(e.title for e in seen)  # type: ignore[attr-defined]
    assert titles == ["health: database is bad", "health: venue faults is bad"]
