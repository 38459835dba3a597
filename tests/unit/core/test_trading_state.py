from __future__ import annotations

import logging

import pytest

from core.clock import SimClock
from core.domain.enums import TradingState
from core.domain.events import Event
from core.errors import StorageUnavailable
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


class _LockedWrites:
    """A key-value store whose writes fail while ``down`` (another process holds the lock)."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self.down = False

    async def get(self, key: StateKey) -> str | None:
        return await self._inner.get(key)  # type: ignore[attr-defined,no-any-return]

    async def set(self, key: StateKey, value: str) -> None:
        if self.down:
            raise StorageUnavailable("database is locked")
        await self._inner.set(key, value)  # type: ignore[attr-defined]


async def test_an_operator_resume_written_before_the_storage_halt_is_not_written_over() -> None:
    """The halt waits in memory for the lock; the operator, alerted, resumes as soon as the
    lock goes, before this process writes its halt: the resume stands."""
    store = MemoryStorage()
    clock = SimClock(1_000)
    db = _LockedWrites(store.state)
    ours = TradingStateService(db, EventBus(), clock)  # type: ignore[arg-type]
    assert await ours.current() is TradingState.ACTIVE
    db.down = True
    await ours.fail_closed("database is locked")
    assert await ours.current() is TradingState.HALTED  # still locked: halted in memory
    db.down = False
    clock.advance_to(clock.now_ms() + 500)
    operator = TradingStateService(store.state, EventBus(), clock)  # `qt state resume`
    await operator.set(TradingState.ACTIVE, reason="db back", actor="cli")
    assert await ours.current() is TradingState.ACTIVE
    assert await store.state.get(StateKey.TRADING_STATE) == "active"
    assert await ours.current() is TradingState.ACTIVE  # and it stays so


async def test_a_resume_from_before_the_storage_failure_does_not_lift_its_halt() -> None:
    store = MemoryStorage()
    clock = SimClock(1_000)
    operator = TradingStateService(store.state, EventBus(), clock)
    await operator.set(TradingState.HALTED, reason="incident", actor="cli")
    await operator.set(TradingState.ACTIVE, reason="incident over", actor="cli")
    clock.advance_to(clock.now_ms() + 500)
    db = _LockedWrites(store.state)
    ours = TradingStateService(db, EventBus(), clock)  # type: ignore[arg-type]  # never read it
    db.down = True
    await ours.fail_closed("database is locked")
    db.down = False
    assert await ours.current() is TradingState.HALTED  # the halt goes to disk
    assert await store.state.get(StateKey.TRADING_STATE) == "halted"
    clock.advance_to(clock.now_ms() + 500)
    assert await ours.current() is TradingState.HALTED  # until an operator resumes it
    await operator.set(TradingState.ACTIVE, reason="db checked", actor="cli")
    assert await ours.current() is TradingState.ACTIVE
