from __future__ import annotations

import asyncio

import pytest

from core.clock import AcceleratedClock, SimClock


async def test_sim_clock_sleep_waits_for_advance() -> None:
    clock = SimClock(100)
    woke: list[int] = []

    async def sleeper() -> None:
        await clock.sleep_until(300)
        woke.append(clock.now_ms())

    task = asyncio.create_task(sleeper())
    await asyncio.sleep(0)
    clock.advance_to(200)
    await asyncio.sleep(0)
    assert woke == []
    clock.advance_to(350)
    await task
    assert woke == [350]


def test_sim_clock_refuses_to_go_back() -> None:
    clock = SimClock(10)
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance_to(5)


async def test_accelerated_clock_scales_wall_time() -> None:
    wall = SimClock(1_000)
    clock = AcceleratedClock(start_ms=5_000_000, speed=3600.0, wall=wall)
    assert clock.now_ms() == 5_000_000
    wall.advance_to(2_000)  # one wall second
    await clock.sleep_until(5_000_000 + 3_600_000)  # due already: returns at once
    assert clock.now_ms() == 5_000_000 + 3_600_000
    assert clock.wall_ms_until(5_000_000 + 7_200_000) == pytest.approx(1_000)
    clock.anchor_now()  # the process starts now: market time restarts from start_ms
    assert clock.now_ms() == 5_000_000


def test_accelerated_clock_rejects_bad_speed() -> None:
    with pytest.raises(ValueError, match="speed must be > 0"):
        AcceleratedClock(start_ms=0, speed=0)


async def test_accelerated_clock_stops_at_the_time_waited_for() -> None:
    # A slow consumer must not see market time pass the candle close it waited for: the demo
    # stamps fills and events with now_ms() while it processes that candle.
    wall = SimClock(0)
    clock = AcceleratedClock(start_ms=1_000_000, speed=1000.0, wall=wall)
    assert clock.now_ms() == 1_000_000
    wall.advance_to(5)  # 5 wall ms: market time would be 1_005_000, nobody waited that far yet
    assert clock.now_ms() == 1_000_000
    await clock.sleep_until(1_002_000)  # already due in wall time: returns at once
    assert clock.now_ms() == 1_002_000
    wall.advance_to(60_000)  # a minute of wall time spent processing that candle
    assert clock.now_ms() == 1_002_000
    await clock.sleep_until(1_003_000)
    assert clock.now_ms() == 1_003_000
    assert clock.wall_ms_until(1_004_000) == 0.0  # overdue in wall time: no sleep needed
