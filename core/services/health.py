"""The health monitor: is the process fit to trade? Data freshness per symbol, the venue's
reachability, the models' age, the event loop's lag, the database's writability, disk space.

``check_health`` is pure (one frozen ``HealthInput`` in, one ``HealthReport`` out); the
``HealthMonitor`` gathers the input every minute (the ``health`` job), keeps the latest report
for ``/health``, publishes an ``AlertRaised`` when a check has turned bad (two runs in a row,
and again when it is fine two runs in a row), and hands the bad ones to the Risk Brain as an
input of its score (its "health" component, which the CEO's mode follows).

Thresholds: a symbol's newest candle older than ``stale_candles`` candles is bad (the Risk
Brain's own rule: 3); a venue call that fails or takes over ``venue_timeout_s`` is bad; the
serving models trained longer ago than ``model_age_days`` warn, a champion whose live record
drifted (the learning manager's drift check) is bad; an event-loop lag over
``lag_warn_ms`` warns, over ``lag_bad_ms`` is bad; a failed database write is bad; free disk
under ``disk_warn_mb`` warns, under ``disk_bad_mb`` is bad; ``venue_faults_warn`` (3)
temporary venue failures in the last ``venue_faults_window_s`` wall seconds (timeouts, 429s,
5xx, garbled answers, each retried with backoff or given up) warn, ``venue_faults_bad`` (10)
are bad: a venue misbehaving for two checks in a row raises the alert, and its end another.
The window is wall time, not "since the previous check", so the rule is the same however often
the check runs (every wall minute in a real run, twice a second in the chaos harness). It counts
from the process's start (the faults of a start against a misbehaving venue, its reads
retried, count), and across restarts: each check stores the window's counts in the state store
(``StateKey.VENUE_FAULTS``, by wall-clock time), and a new process's first check takes up those
of the last window, so a process restarted again and again while the venue misbehaves (killed,
or a start that gave up, as a supervisor restarts it) still raises the alert.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from core.clock import Clock
from core.domain.events import AlertRaised
from core.ports import KeyValueRepo, StateKey
from core.services.bus import EventBus
from core.values import value_class

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
ALERT_AFTER_RUNS = 2  # a check must be bad (or fine again) this many runs in a row to alert
# A check a little less than a window ago is outside the window: the scheduler runs a job a
# few milliseconds early or late, and two intervals must not count as one.
WINDOW_SLACK = 0.05


class Status(StrEnum):
    """One check's verdict."""

    OK = "ok"
    WARN = "warn"
    BAD = "bad"


@value_class(frozen=True, slots=True, kw_only=True)
class HealthConfig:
    """The thresholds (see module docstring)."""

    stale_candles: float = 3.0
    venue_timeout_s: float = 10.0
    model_age_days: float = 14.0
    lag_warn_ms: float = 250.0
    lag_bad_ms: float = 2_000.0
    disk_warn_mb: float = 1_024.0
    disk_bad_mb: float = 200.0
    # the venue's temporary failures (each retried or given up) in the last window
    venue_faults_warn: int = 3
    venue_faults_bad: int = 10
    venue_faults_window_s: float = 60.0  # wall seconds: the health job's interval in a real run


@value_class(frozen=True, slots=True, kw_only=True)
class HealthInput:
    """What the checks look at (None: not measured here)."""

    now_ms: int
    candle_ms: int
    last_close_ms: Mapping[str, int | None]  # per traded symbol: its newest candle's close
    venue_error: str | None = None  # the probe's failure ("" or None: reached)
    venue_s: float | None = None  # how long the probe took
    venue_faults: int | None = None  # the venue's temporary failures in the last window
    trained_until_ms: Mapping[str, int] = field(default_factory=dict)  # per serving member
    # per member whose champion's live record drifted (the learning manager's): why
    model_drift: Mapping[str, str] = field(default_factory=dict)
    loop_lag_ms: float | None = None
    database_error: str | None = None
    disk_free_mb: float | None = None
    config: HealthConfig = field(default_factory=HealthConfig)


@value_class(frozen=True, slots=True)
class Check:
    """One check: its name, verdict and what it saw."""

    name: str
    status: Status
    detail: str


@value_class(frozen=True, slots=True)
class HealthReport:
    """Every check at one time."""

    ts_ms: int
    checks: tuple[Check, ...]

    @property
    def status(self) -> Status:
        """Return the worst verdict."""
        order = (Status.OK, Status.WARN, Status.BAD)
        return max((c.status for c in self.checks), key=order.index, default=Status.OK)

    def bad(self) -> tuple[str, ...]:
        """Return ``name: detail`` of every bad check."""
        return tuple(f"{c.name}: {c.detail}" for c in self.checks if c.status is Status.BAD)


def check_health(inp: HealthInput) -> HealthReport:
    """Return the verdict of every check (see module docstring)."""
    cfg, checks = inp.config, []
    for symbol, closed in sorted(inp.last_close_ms.items()):
        if closed is None:
            checks.append(Check(f"data {symbol}", Status.BAD, "no candle yet"))
            continue
        late = (inp.now_ms - closed) / inp.candle_ms
        status = Status.BAD if late > cfg.stale_candles else Status.OK
        checks.append(Check(f"data {symbol}", status, f"newest candle {late:.1f} candles old"))
    if inp.venue_error is not None or inp.venue_s is not None:
        slow = inp.venue_s is not None and inp.venue_s > cfg.venue_timeout_s
        if inp.venue_error:
            checks.append(Check("venue", Status.BAD, inp.venue_error[:200]))
        else:
            took = f"answered in {inp.venue_s or 0.0:.2f} s"
            checks.append(Check("venue", Status.BAD if slow else Status.OK, took))
    if inp.venue_faults is not None:
        n = inp.venue_faults
        status = _grade(n >= cfg.venue_faults_warn, n >= cfg.venue_faults_bad)
        window = f"{cfg.venue_faults_window_s:.0f} s"
        checks.append(
            Check("venue faults", status, f"{n} retried or failed call(s) in the last {window}")
        )
    for member, until in sorted(inp.trained_until_ms.items()):
        days = (inp.now_ms - until) / DAY_MS
        status = Status.WARN if days > cfg.model_age_days else Status.OK
        checks.append(Check(f"model {member}", status, f"trained until {days:.1f} days ago"))
    for member, why in sorted(inp.model_drift.items()):
        checks.append(Check(f"drift {member}", Status.BAD, why[:200]))
    if inp.loop_lag_ms is not None:
        lag = inp.loop_lag_ms
        status = _grade(lag > cfg.lag_warn_ms, lag > cfg.lag_bad_ms)
        checks.append(Check("event loop", status, f"lag {lag:.0f} ms"))
    if inp.database_error is not None:
        status = Status.BAD if inp.database_error else Status.OK
        checks.append(Check("database", status, inp.database_error[:200] or "writable"))
    if inp.disk_free_mb is not None:
        free = inp.disk_free_mb
        status = _grade(free < cfg.disk_warn_mb, free < cfg.disk_bad_mb)
        checks.append(Check("disk", status, f"{free:,.0f} MiB free"))
    return HealthReport(inp.now_ms, tuple(checks))


def _error_text(e: BaseException) -> str:
    """Return ``Type: message`` (the type alone when the message is empty: a timeout)."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _grade(warn: bool, bad: bool) -> Status:
    return Status.BAD if bad else Status.WARN if warn else Status.OK


class LoopLagProbe:
    """Measure how late the event loop wakes a sleeper (the worst of the last minute)."""

    def __init__(self, every_s: float = 0.5, wall: Callable[[], float] = time.monotonic) -> None:
        self._every_s = every_s
        self._wall = wall
        self._worst_ms = 0.0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Begin sampling."""
        self._task = asyncio.create_task(self._run(), name="loop-lag-probe")

    async def _run(self) -> None:
        while True:
            before = self._wall()
            await asyncio.sleep(self._every_s)
            late_ms = (self._wall() - before - self._every_s) * 1000.0
            self._worst_ms = max(self._worst_ms, late_ms)

    def take(self) -> float:
        """Return the worst lag since the last call, and start again."""
        worst, self._worst_ms = self._worst_ms, 0.0
        return max(0.0, worst)

    async def stop(self) -> None:
        """Stop sampling."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


@dataclass(slots=True, kw_only=True)
class HealthSources:
    """Where the monitor reads the process from (the composition root fills it)."""

    symbols: Callable[[], Sequence[str]]
    last_close_ms: Callable[[str], int | None]
    venue_probe: Callable[[], Awaitable[object]] | None = None  # a cheap venue call
    # the venue adapter's count of temporary failures so far (None: not counted, paper)
    venue_faults: Callable[[], int] | None = None
    trained_until_ms: Callable[[], Mapping[str, int]] = dict
    drift: Callable[[], Mapping[str, str]] = dict  # the learning manager's drifting members
    lag: LoopLagProbe | None = None
    state: KeyValueRepo | None = None  # written to, to prove the database takes writes
    data_dir: Path | None = None


class HealthMonitor:
    """Check the process's health now and then (see module docstring)."""

    def __init__(
        self,
        sources: HealthSources,
        *,
        bus: EventBus,
        clock: Clock,
        candle_ms: int,
        config: HealthConfig | None = None,
        wall: Callable[[], float] = time.monotonic,
        epoch: Callable[[], float] = time.time,
    ) -> None:
        self._s = sources
        self._bus = bus
        self._clock = clock
        self._candle_ms = candle_ms
        self.config = config or HealthConfig()
        self._wall = wall
        self.latest: HealthReport | None = None
        self._bad: set[str] = set()  # names of the checks alerted bad (not fine again since)
        self._runs: dict[str, int] = {}  # per check: runs in a row on the other side of _bad
        self._epoch = epoch  # wall-clock seconds: the fault window, shared across processes
        # (epoch s, the venue's faults since the check before) of the last window's checks,
        # the earlier processes' too (None: not read from the state store yet)
        self._faults: list[tuple[float, int]] | None = None
        self._faults_seen = 0  # the adapter counts from its creation: 0 at the process's start

    def issues(self) -> tuple[str, ...]:
        """Return the bad checks of the latest report (the Risk Brain's input)."""
        return () if self.latest is None else self.latest.bad()

    async def check(self) -> HealthReport:
        """Check now; alert on each check that turned bad or fine again; return the report."""
        s, now = self._s, self._clock.now_ms()
        venue_error, venue_s = await self._probe_venue()
        report = check_health(
            HealthInput(
                now_ms=now,
                candle_ms=self._candle_ms,
                last_close_ms={sym: s.last_close_ms(sym) for sym in s.symbols()},
                venue_error=venue_error,
                venue_s=venue_s,
                venue_faults=await self._new_faults(),
                trained_until_ms=s.trained_until_ms(),
                model_drift=s.drift(),
                loop_lag_ms=None if s.lag is None else s.lag.take(),
                database_error=await self._probe_database(now),
                disk_free_mb=self._disk_free_mb(),
                config=self.config,
            )
        )
        self.latest = report
        # Two runs in a row before an alert either way: a check that flips every minute
        # (a flaky venue) says so once, not sixty times an hour.
        bad = {c.name: c for c in report.checks if c.status is Status.BAD}
        for name in sorted(set(bad) | self._bad | set(self._runs)):
            flipped = (name in bad) != (name in self._bad)
            self._runs[name] = self._runs.get(name, 0) + 1 if flipped else 0
            if self._runs[name] < ALERT_AFTER_RUNS:
                continue
            self._runs[name] = 0
            if name in bad:
                self._bad.add(name)
                await self._alert("critical", f"health: {name} is bad", bad[name].detail)
            else:
                self._bad.discard(name)
                await self._alert("warning", f"health: {name} is fine again", "ok twice in a row")
        return report

    async def _new_faults(self) -> int | None:
        """Return the venue's temporary failures in the last window (None: uncounted), this
        process's and the earlier ones' (``StateKey.VENUE_FAULTS``); store the window's."""
        if self._s.venue_faults is None:
            return None
        now, total = self._epoch(), self._s.venue_faults()
        new, self._faults_seen = max(0, total - self._faults_seen), total
        if self._faults is None:
            self._faults = await self._stored_faults()
        since = now - self.config.venue_faults_window_s * (1 - WINDOW_SLACK)
        # A count stamped after now is of a clock since stepped back (or a bad store): not of
        # the last window, and kept it would hold the check bad until the clock caught up.
        kept = [(t, n) for t, n in self._faults if since < t <= now and n >= 0]
        self._faults = [*kept, (now, new)]
        await self._store_faults()
        return sum(n for _, n in self._faults)

    async def _stored_faults(self) -> list[tuple[float, int]]:
        """Return the fault counts the earlier processes stored ([] if none, or unreadable:
        the database's own check says when it fails)."""
        if self._s.state is None:
            return []
        try:
            text = await self._s.state.get(StateKey.VENUE_FAULTS)
            return [(float(t), int(n)) for t, n in json.loads(text or "[]")]
        except Exception as e:  # noqa: BLE001 - a count lost is not worth failing the check
            log.warning("venue fault counts of the earlier process unreadable: %s", e)
            return []

    async def _store_faults(self) -> None:
        if self._s.state is None or self._faults is None:
            return
        try:
            await self._s.state.set(StateKey.VENUE_FAULTS, json.dumps(self._faults))
        except Exception as e:  # noqa: BLE001 - the database's check says it
            log.debug("venue fault counts not stored: %s", e)

    async def _probe_venue(self) -> tuple[str | None, float | None]:
        if self._s.venue_probe is None:
            return None, None
        started = self._wall()
        try:
            async with asyncio.timeout(self.config.venue_timeout_s):
                await self._s.venue_probe()
        except Exception as e:  # noqa: BLE001 - any failure is the verdict
            return _error_text(e), self._wall() - started
        return "", self._wall() - started

    async def _probe_database(self, now_ms: int) -> str | None:
        if self._s.state is None:
            return None
        try:
            await self._s.state.set(StateKey.HEALTH_PROBE, str(now_ms))
        except Exception as e:  # noqa: BLE001 - any failure is the verdict
            return _error_text(e)
        return ""

    def _disk_free_mb(self) -> float | None:
        if self._s.data_dir is None:
            return None
        try:
            return shutil.disk_usage(self._s.data_dir).free / 2**20
        except OSError as e:
            log.warning("disk space of %s unknown: %s", self._s.data_dir, e)
            return None

    async def _alert(self, severity: str, title: str, detail: str) -> None:
        await self._bus.publish(
            AlertRaised(ts_ms=self._clock.now_ms(), severity=severity, title=title, detail=detail)
        )
