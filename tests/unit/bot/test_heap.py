"""The running process freezes its settled heap (no full collection walks it while it
trades) and hands it back to the collector when it stops."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from bot.heap import freeze_when_settled, release
from core.domain.events import ProcessStarted, ProcessStopped, SignalProviderChanged
from core.services.bus import EventBus


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


async def test_the_heap_is_frozen_at_start_and_when_models_change_and_released_at_stop() -> None:
    bus = EventBus()
    freeze_when_settled(bus)
    assert gc.get_freeze_count() == 0

    await bus.publish(ProcessStarted(ts_ms=1, mode="demo", exchange="synthetic", symbols=("X",)))
    at_start = gc.get_freeze_count()
    assert at_start > 0 and gc.get_count()[2] == 0  # collected, then all of it frozen

    models = [object(), [[] for _ in range(1_000)]]  # a new model's objects
    await bus.publish(SignalProviderChanged(ts_ms=2, provider="ensemble", previous="", reason=""))
    assert gc.get_freeze_count() >= at_start + 1_000
    assert models

    release()
    assert gc.get_freeze_count() == 0


async def test_other_events_freeze_nothing() -> None:
    bus = EventBus()
    freeze_when_settled(bus)
    await bus.publish(ProcessStopped(ts_ms=3, reason="stop"))
    assert gc.get_freeze_count() == 0
