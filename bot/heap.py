"""Keep the collector's full passes off the trading loop.

The running process holds its modules, models and candle histories for its whole life: half
a million objects that every full (generation-2) collection walked again, holding the event
loop 100-240 ms each time (measured by ``bench/loop_lag_during_retrain.py``: they were the
demo's loop-lag maxima). ``gc.freeze`` moves the objects alive at a moment to a permanent
generation the collector skips; reference counting still frees each one dropped. The heap is
frozen once start-up has loaded everything (after one full collection: nothing trades yet)
and again whenever other models serve (their library's objects arrive then; only the young
generations are collected first, the loop is trading). The price: a frozen object in a
reference cycle that becomes garbage later is not reclaimed while the process runs (a
replaced model's cycles, rare and small; and a cycle already garbage in the oldest
generation at a freeze); ``release`` hands everything back to the collector when the
process stops.
"""

from __future__ import annotations

import gc

from core.domain.events import Event
from core.services.bus import EventBus

SETTLED = ("model.promoted", "model.rolled_back", "strategy.provider_changed")


def freeze_when_settled(bus: EventBus) -> None:
    """Freeze the heap after ``process.started`` and after each change of serving models."""

    async def started(_event: Event) -> None:
        gc.collect()
        gc.freeze()

    async def models_changed(_event: Event) -> None:
        # the young generations only (a few thousand objects, not the new library's heap):
        # the cycles that are garbage already would be frozen with the live objects
        gc.collect(1)
        gc.freeze()

    bus.subscribe("process.started", started, name="heap.freeze")
    for topic in SETTLED:
        bus.subscribe(topic, models_changed, name="heap.freeze")


def release() -> None:
    """Give every frozen object back to the collector (the process has stopped)."""
    gc.unfreeze()
