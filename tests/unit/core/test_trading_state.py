from __future__ import annotations

from core.clock import SimClock
from core.domain.enums import TradingState
from core.domain.events import Event
from core.services.bus import EventBus
from core.services.trading_state import TradingStateService
from storage.memory import MemoryStorage


async def test_state_defaults_active_persists_and_publishes() -> None:
    store = MemoryStorage()
    events: list[Event] = []

    async def record(e: Event) -> None:
        events.append(e)

    bus = EventBus(sink=store.events.append)
    bus.subscribe("trading.*", record)
    clock = SimClock(42)
    svc = TradingStateService(store.state, bus, clock)
    assert await svc.current() is TradingState.ACTIVE
    assert await svc.set(TradingState.HALTED, reason="operator", actor="cli") is True
    assert await svc.set(TradingState.HALTED, reason="again", actor="cli") is False
    assert len(events) == 1
    # a fresh service (a restart) reads the halt back from the store
    again = TradingStateService(store.state, bus, clock)
    assert await again.current() is TradingState.HALTED
