from __future__ import annotations

import logging

import pytest

from core.clock import SimClock
from core.domain.enums import TradingState
from core.domain.events import Event
from core.ports import StateKey
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


async def test_a_change_by_another_process_is_seen_at_the_next_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStorage()
    clock = SimClock(0)
    ours = TradingStateService(store.state, EventBus(), clock)
    assert await ours.current() is TradingState.ACTIVE
    cli = TradingStateService(store.state, EventBus(), clock)  # e.g. `qt state halt`
    await cli.set(TradingState.HALTED, reason="exchange incident", actor="cli")
    with caplog.at_level(logging.WARNING):
        assert await ours.current() is TradingState.HALTED
    assert "changed outside this process: active -> halted (exchange incident)" in caplog.text
    assert ours.cached is TradingState.HALTED


async def test_an_unreadable_stored_state_halts(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStorage()
    await store.state.set(StateKey.TRADING_STATE, "paused")  # not a state (hand-edited db)
    svc = TradingStateService(store.state, EventBus(), SimClock(0))
    with caplog.at_level(logging.ERROR):
        assert await svc.current() is TradingState.HALTED
    assert "'paused' is not one of active, reducing, halted" in caplog.text


async def test_a_reason_quoting_an_error_is_stored_without_its_secret() -> None:
    from core.redaction import REDACTED, Redactor, install_redactor, process_redactor

    key = "KEY-0123456789abcdef"
    store = MemoryStorage()
    svc = TradingStateService(store.state, EventBus(sink=store.events.append), SimClock(0))
    before = process_redactor()
    install_redactor(Redactor([key]))
    try:
        await svc.set(TradingState.HALTED, reason=f"storage failed: ?apiKey={key}", actor="engine")
    finally:
        install_redactor(before)
    assert await svc.reason() == f"storage failed: ?apiKey={REDACTED}"
    [event] = await store.events.list_events("trading.")
    assert event.payload["reason"] == f"storage failed: ?apiKey={REDACTED}"
