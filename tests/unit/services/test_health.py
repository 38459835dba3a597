"""The health monitor: each check's verdict on hand-made inputs, alerts when a check turns bad
and when it is fine again, the bad checks handed to the Risk Brain, the loop-lag probe."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from core.clock import SimClock
from core.domain.events import AlertRaised, Event
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


async def test_a_venue_failing_calls_that_retries_hide_raises_the_alert() -> None:
    """Retries hide each fault (the process stays up, the probe succeeds): the count of them
    per check is what says the venue misbehaves; its end is said too."""
    from core.errors import TemporaryError
    from core.retry import retry

    bus, seen, clock = EventBus(), list[Event](), SimClock(NOW)

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

    counted = [0]

    async def no_sleep(_s: float) -> None:
        return None

    async def one_call() -> None:
        def count(_e: object) -> None:
            counted[0] += 1

        await retry(flaky_then_fine, attempts=5, sleep=no_sleep, on_failure=count)

    monitor = HealthMonitor(
        HealthSources(
            symbols=lambda: [], last_close_ms=lambda _s: None, venue_faults=lambda: counted[0]
        ),
        bus=bus,
        clock=clock,
        candle_ms=HOUR_MS,
    )
    assert verdicts_of(await monitor.check()) == {"venue faults": Status.OK}  # the baseline
    for _ in range(2):
        for _ in range(4):
            await one_call()  # every call answers in the end: 12 faults hidden per check
        report = await monitor.check()
        assert verdicts_of(report) == {"venue faults": Status.BAD}
    assert [(e.severity, e.title) for e in seen] == [("critical", "health: venue faults is bad")]  # type: ignore[attr-defined]
    assert "12 retried or failed call(s)" in report.checks[0].detail
    await monitor.check()
    await monitor.check()  # quiet again twice
    assert [e.title for e in seen][1:] == ["health: venue faults is fine again"]  # type: ignore[attr-defined]


def verdicts_of(report: object) -> dict[str, Status]:
    return {c.name: c.status for c in report.checks}  # type: ignore[attr-defined]
