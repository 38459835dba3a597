from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.halt_note import FileHaltNote, halt_note_for
from core.clock import SimClock
from core.domain.enums import TradingState
from core.domain.events import Event, TradingStateChanged
from core.ports import KeptHalt, StateKey
from core.services.bus import EventBus
from core.services.trading_state import TradingStateService
from storage.memory import MemoryStorage
from tests.fakes import FlakyState


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


async def test_an_operator_resume_written_before_the_storage_halt_is_not_written_over() -> None:
    """The halt waits in memory for the lock; the operator, alerted, resumes as soon as the
    lock goes, before this process writes its halt: the resume stands."""
    store = MemoryStorage()
    clock = SimClock(1_000)
    db = FlakyState(store.state)
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
    db = FlakyState(store.state)
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


async def test_a_process_killed_before_its_storage_halt_reached_the_database_leaves_it(
    tmp_path: Path,
) -> None:
    store, clock = MemoryStorage(), SimClock(1_000)
    db = FlakyState(store.state)
    note = FileHaltNote(tmp_path / "qt.sqlite.storage-halt")
    first = TradingStateService(db, EventBus(), clock, note=note)  # type: ignore[arg-type]
    assert await first.current() is TradingState.ACTIVE
    db.down = True
    await first.fail_closed("cannot write the database qt.sqlite: the disk is full")
    assert note.read() == (1_000, "cannot write the database qt.sqlite: the disk is full", "")
    del first  # SIGKILL: the halt never reached the database
    db.down = False  # the disk has room again before the restart
    assert await store.state.get(StateKey.TRADING_STATE) is None
    events: list[Event] = []

    async def record(e: Event) -> None:
        events.append(e)

    bus = EventBus()
    bus.subscribe("*", record)
    clock.advance_to(5_000)
    second = TradingStateService(db, bus, clock, note=note)  # type: ignore[arg-type]
    assert await second.current() is TradingState.HALTED
    assert await store.state.get(StateKey.TRADING_STATE) == "halted"  # on disk now
    assert "the disk is full" in await second.reason()
    assert note.read() is None
    [halt] = events
    assert isinstance(halt, TradingStateChanged) and halt.actor == "storage"
    assert await second.current() is TradingState.HALTED  # until an operator resumes
    operator = TradingStateService(store.state, EventBus(), clock)
    await operator.set(TradingState.ACTIVE, reason="disk checked", actor="cli")
    assert await second.current() is TradingState.ACTIVE


async def test_an_operator_resume_while_the_process_was_down_answers_its_kept_halt(
    tmp_path: Path,
) -> None:
    store, clock = MemoryStorage(), SimClock(1_000)
    note = FileHaltNote(tmp_path / "qt.sqlite.storage-halt")
    note.write(KeptHalt(1_000, "database is locked", ""))  # a process killed in the outage
    clock.advance_to(2_000)
    operator = TradingStateService(store.state, EventBus(), clock)
    await operator.set(TradingState.ACTIVE, reason="looked, all fine", actor="cli")
    again = TradingStateService(store.state, EventBus(), clock, note=note)
    assert await again.current() is TradingState.ACTIVE
    assert note.read() is None


async def test_a_kept_halt_that_cannot_be_read_halts_and_one_not_kept_still_halts_in_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    note = FileHaltNote(tmp_path / "qt.sqlite.storage-halt")
    note.path.write_text("{not json")
    svc = TradingStateService(MemoryStorage().state, EventBus(), SimClock(0), note=note)
    assert await svc.current() is TradingState.HALTED
    assert "not one this program wrote" in await svc.reason()

    class FullDisk(FileHaltNote):
        def write(self, halt: KeptHalt) -> None:
            raise OSError(28, "No space left on device")

    store = MemoryStorage()
    db = FlakyState(store.state)
    full = TradingStateService(db, EventBus(), SimClock(0), note=FullDisk(note.path))  # type: ignore[arg-type]
    db.down = True
    with caplog.at_level(logging.ERROR):
        await full.fail_closed("disk is full")
    assert "could not be kept beside the database either" in caplog.text
    assert await full.current() is TradingState.HALTED


def test_the_note_sits_beside_the_database_file_and_not_for_one_in_memory(tmp_path: Path) -> None:
    note = halt_note_for(f"sqlite+aiosqlite:///{tmp_path}/live.sqlite")
    assert note is not None and note.path == tmp_path / "live.sqlite.storage-halt"
    assert halt_note_for("memory://") is None
    assert halt_note_for("sqlite+aiosqlite://") is None


async def test_a_resume_the_killed_process_had_seen_does_not_lift_its_kept_halt(
    tmp_path: Path,
) -> None:
    """The operator's clock may run ahead of the process's (an accelerated test clock, a
    drifting host): the resume mark the halting process had seen is not a resume since."""
    store = MemoryStorage()
    note = FileHaltNote(tmp_path / "qt.sqlite.storage-halt")
    cli = TradingStateService(store.state, EventBus(), SimClock(9_000_000))  # ahead
    await cli.set(TradingState.ACTIVE, reason="earlier incident over", actor="cli")
    db = FlakyState(store.state)
    first = TradingStateService(db, EventBus(), SimClock(1_000), note=note)  # type: ignore[arg-type]
    assert await first.current() is TradingState.ACTIVE  # it sees that resume
    db.down = True
    await first.fail_closed("database is locked")
    del first  # killed
    db.down = False
    second = TradingStateService(db, EventBus(), SimClock(2_000), note=note)  # type: ignore[arg-type]
    assert await second.current() is TradingState.HALTED
    assert await store.state.get(StateKey.TRADING_STATE) == "halted"


async def test_a_failure_before_the_first_read_does_not_take_an_older_resume_for_its_answer() -> (
    None
):
    """A process that fails on the database before it ever read the state (its start's first
    write): a resume stored long before, by a clock running ahead, is not one since."""
    store = MemoryStorage()
    cli = TradingStateService(store.state, EventBus(), SimClock(9_000_000))  # ahead
    await cli.set(TradingState.ACTIVE, reason="an older incident over", actor="cli")
    db = FlakyState(store.state)
    fresh = TradingStateService(db, EventBus(), SimClock(1_000))  # type: ignore[arg-type]
    db.down = True
    await fresh.fail_closed("disk is full")  # before any read
    db.down = False
    assert await fresh.current() is TradingState.HALTED
    assert await store.state.get(StateKey.TRADING_STATE) == "halted"
