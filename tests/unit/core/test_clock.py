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


def test_accelerated_clock_scales_wall_time() -> None:
    wall = SimClock(1_000)
    clock = AcceleratedClock(start_ms=5_000_000, speed=3600.0, wall=wall)
    assert clock.now_ms() == 5_000_000
    wall.advance_to(2_000)  # one wall second
    assert clock.now_ms() == 5_000_000 + 3_600_000
    assert clock.wall_ms_until(5_000_000 + 7_200_000) == pytest.approx(1_000)
    clock.anchor_now()  # the process starts now: market time restarts from start_ms
    assert clock.now_ms() == 5_000_000


def test_accelerated_clock_rejects_bad_speed() -> None:
    with pytest.raises(ValueError, match="speed must be > 0"):
        AcceleratedClock(start_ms=0, speed=0)
