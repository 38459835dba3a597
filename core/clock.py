"""Clocks: the only source of time for the core.

Nothing in ``core/`` reads the wall clock directly. ``SimClock`` moves only when advanced
(backtests, tests); ``LiveClock`` is the wall clock; ``AcceleratedClock`` runs market time
faster than wall time (the demo) by a fixed factor from a chosen market start, never past the
time last waited for.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """A source of time in integer milliseconds since the Unix epoch (UTC)."""

    def now_ms(self) -> int:
        """Return the current time in ms."""
        ...

    async def sleep_until(self, ts_ms: int) -> None:
        """Wait until the clock reads at least ``ts_ms``."""
        ...


class SimClock:
    """A clock that moves only when told to; sleeping waits for someone to advance it."""

    def __init__(self, start_ms: int = 0) -> None:
        self._now_ms = start_ms
        self._advanced = asyncio.Event()

    def now_ms(self) -> int:
        """Return the simulated time."""
        return self._now_ms

    def advance_to(self, ts_ms: int) -> None:
        """Move time forward to ``ts_ms``; moving backwards is refused."""
        if ts_ms < self._now_ms:
            raise ValueError(f"SimClock cannot go back: now {self._now_ms}, requested {ts_ms}")
        self._now_ms = ts_ms
        self._advanced.set()
        self._advanced = asyncio.Event()

    async def sleep_until(self, ts_ms: int) -> None:
        """Wait until another task advances the clock to ``ts_ms`` or later."""
        while self._now_ms < ts_ms:
            await self._advanced.wait()


class LiveClock:
    """The wall clock."""

    def now_ms(self) -> int:
        """Return wall time in ms."""
        return time.time_ns() // 1_000_000

    async def sleep_until(self, ts_ms: int) -> None:
        """Sleep on the event loop until wall time reaches ``ts_ms``."""
        delay_s = (ts_ms - self.now_ms()) / 1000
        if delay_s > 0:
            await asyncio.sleep(delay_s)


class AcceleratedClock:
    """Market time that runs ``speed`` times faster than wall time, starting at ``start_ms``,
    but never past the latest time a sleeper waited for.

    The replay feed waits for each candle's close and then hands the candle on; everything
    done with that candle (fills, orders, events) is stamped ``now_ms()``. Unbounded, market
    time would run on while the candle is processed: at high speed a few wall ms are hours, so
    fills landed after later candles or off the grid. Held at the close waited for, market time
    is that candle's close however long processing takes. Wall time keeps counting meanwhile,
    so a slow candle makes the next ones come sooner, never earlier than their close.
    """

    def __init__(self, start_ms: int, speed: float, wall: Clock | None = None) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be > 0, was {speed}")
        self._wall = wall or LiveClock()
        self._start_ms = start_ms
        self._wall_start_ms = self._wall.now_ms()
        self._limit_ms = start_ms  # nobody has waited yet
        self.speed = speed

    def anchor_now(self) -> None:
        """Restart the acceleration from ``start_ms`` at this wall instant (call at process start,
        so time spent building the process does not count as market time)."""
        self._wall_start_ms = self._wall.now_ms()

    def _running_ms(self) -> int:
        """Return where accelerated time has got to, ignoring the limit."""
        elapsed_ms = self._wall.now_ms() - self._wall_start_ms
        return self._start_ms + int(elapsed_ms * self.speed)

    def now_ms(self) -> int:
        """Return accelerated market time, held at the latest time waited for."""
        return min(self._running_ms(), self._limit_ms)

    def wall_ms_until(self, ts_ms: int) -> float:
        """Return how many wall-clock ms remain until accelerated time reaches ``ts_ms``."""
        return max(0.0, (ts_ms - self._running_ms()) / self.speed)

    async def sleep_until(self, ts_ms: int) -> None:
        """Let market time run on to ``ts_ms`` and sleep on the event loop until it gets there."""
        self._limit_ms = max(self._limit_ms, ts_ms)
        # A loop, because the event loop may wake a hair early, and at high speed a wall ms is
        # hours of market time: the candle must not be handed on before its close.
        while (delay_ms := self.wall_ms_until(ts_ms)) > 0:  # noqa: ASYNC110 - a deadline, no event
            await asyncio.sleep(delay_ms / 1000)
