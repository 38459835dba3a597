"""Adversarial review of issue 17's crash-safety changes: the storage halt kept beside the
database (``bot.halt_note``, ``TradingStateService``) across kills, restarts and operator
resumes; and a cancel the outage deferred racing a fill of its leg (``ExitExecutor._cancel``)."""

from __future__ import annotations

import asyncio
import os
from decimal import Decimal as D
from pathlib import Path

import pytest

from bot.halt_note import FileHaltNote
from core.clock import SimClock
from core.domain.enums import TradingState
from core.domain.events import AlertRaised, Event, OrderFilled, TradingStateChanged
from core.domain.trades import ClosedTrade
from core.errors import StorageUnavailable
from core.ports import KeptHalt, StateKey
from core.services.bus import EventBus
from core.services.trading_state import TradingStateService
from storage.memory import MemoryStorage
from tests.unit.services.engine_harness import SYMBOL
from tests.unit.services.test_closed_trades_recorded import (
    ENTRY0,
    ENTRY2,
    STOP0,
    STOP2,
    FlakyTrades,
    entered_on_a_failing_disk,
    rig,
    round_trip,
)


class LockedWrites:
    """A key-value store whose writes fail while ``down``."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self.down = False

    async def get(self, key: StateKey) -> str | None:
        return await self._inner.get(key)  # type: ignore[attr-defined,no-any-return]

    async def set(self, key: StateKey, value: str) -> None:
        if self.down:
            raise StorageUnavailable("database is locked")
        await self._inner.set(key, value)  # type: ignore[attr-defined]


def note_in(tmp_path: Path) -> FileHaltNote:
    return FileHaltNote(tmp_path / "qt.sqlite.storage-halt")


async def an_old_resume(store: MemoryStorage, at_ms: int) -> str:
    """An operator resume long before anything below (an incident weeks ago)."""
    cli = TradingStateService(store.state, EventBus(), SimClock(at_ms))
    await cli.set(TradingState.HALTED, reason="old incident", actor="cli")
    await cli.set(TradingState.ACTIVE, reason="old incident over", actor="cli")
    mark = await store.state.get(StateKey.RESUMED_MS)
    assert mark is not None
    return mark


async def test_a_kept_halt_of_bytes_that_are_not_text_halts_instead_of_raising(
    tmp_path: Path,
) -> None:
    note = note_in(tmp_path)
    note.path.write_bytes(b"\xff\xfe\x00garbage\x80")  # a torn sector, a hand-copied file
    svc = TradingStateService(MemoryStorage().state, EventBus(), SimClock(5_000), note=note)
    assert await svc.current() is TradingState.HALTED
    assert "not one this program wrote" in await svc.reason()


async def test_a_kept_halt_that_cannot_be_read_is_not_lifted_by_a_resume_from_before_it(
    tmp_path: Path,
) -> None:
    """Its time unknown, the halt must not count as older than every resume ever made: the
    old resume in the database answered an old halt, not this one."""
    store = MemoryStorage()
    await an_old_resume(store, 1_000)
    note = note_in(tmp_path)
    note.path.write_text("{not json")
    os.utime(note.path, ns=(50_000 * 10**6, 50_000 * 10**6))  # kept at 50 s
    svc = TradingStateService(store.state, EventBus(), SimClock(60_000), note=note)
    assert await svc.current() is TradingState.HALTED
    assert await store.state.get(StateKey.TRADING_STATE) == "halted"  # on disk now
    assert note.read() is None
    # an operator resume after it answers it like any halt
    cli = TradingStateService(store.state, EventBus(), SimClock(70_000))
    await cli.set(TradingState.ACTIVE, reason="looked", actor="cli")
    assert await svc.current() is TradingState.ACTIVE


async def test_a_resume_after_an_unreadable_kept_halt_was_left_answers_it(
    tmp_path: Path,
) -> None:
    store = MemoryStorage()
    note = note_in(tmp_path)
    note.path.write_text('{"since_ms": "soon"}')
    os.utime(note.path, ns=(50_000 * 10**6, 50_000 * 10**6))
    await an_old_resume(store, 55_000)  # while the process was down, after the note
    svc = TradingStateService(store.state, EventBus(), SimClock(60_000), note=note)
    assert await svc.current() is TradingState.ACTIVE
    assert note.read() is None


async def test_a_resume_mark_of_odd_digits_reads_as_no_resume_instead_of_raising(
    tmp_path: Path,
) -> None:
    """A hand-edited mark: '²' is a digit to str.isdigit but not to int()."""
    store = MemoryStorage()
    note = note_in(tmp_path)
    note.write(KeptHalt(1_000, "database is locked", ""))
    await store.state.set(StateKey.RESUMED_MS, "²³:beef")
    svc = TradingStateService(store.state, EventBus(), SimClock(2_000), note=note)
    assert await svc.current() is TradingState.HALTED
    assert await store.state.get(StateKey.TRADING_STATE) == "halted"


async def test_a_halt_that_reached_the_database_before_the_kill_is_not_announced_again(
    tmp_path: Path,
) -> None:
    """Killed between writing the halt and removing its note: the database holds the halt,
    the restart is HALTED by it, with no second storage alert, and nothing is lifted."""
    store, clock = MemoryStorage(), SimClock(1_000)
    db = LockedWrites(store.state)
    note = note_in(tmp_path)
    first = TradingStateService(db, EventBus(), clock, note=note)  # type: ignore[arg-type]
    assert await first.current() is TradingState.ACTIVE
    db.down = True
    await first.fail_closed("the disk is full")
    db.down = False
    kept = note.read()
    assert await first.current() is TradingState.HALTED  # written, note removed ...
    assert kept is not None
    note.write(kept)  # ... but the kill came before the removal
    del first

    events: list[Event] = []

    async def record(e: Event) -> None:
        events.append(e)

    bus = EventBus()
    bus.subscribe("*", record)
    clock.advance_to(9_000)
    second = TradingStateService(db, bus, clock, note=note)  # type: ignore[arg-type]
    assert await second.current() is TradingState.HALTED
    assert await second.current() is TradingState.HALTED
    assert note.read() is None
    assert [e for e in events if isinstance(e, TradingStateChanged)] == []
    assert "the disk is full" in await second.reason()
    cli = TradingStateService(store.state, EventBus(), SimClock(10_000))
    await cli.set(TradingState.ACTIVE, reason="disk checked", actor="cli")
    assert await second.current() is TradingState.ACTIVE


class SlowTrades(FlakyTrades):
    """A trades table that takes a moment for each write (a real database's await)."""

    async def add(self, trade: ClosedTrade) -> bool:
        await asyncio.sleep(0)
        return await super().add(trade)


async def test_two_flushes_of_the_trades_an_outage_left_unstored_store_every_one_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The rows left out wait in one list; every save and venue sync flushes it now, so two
    tasks may flush at once (the sync job, and a save of the candle loop or of ``stop``):
    each must store what the other has not, and neither drop a row it did not store."""
    storage = MemoryStorage()
    slow = SlowTrades(storage.trades)
    r = rig(monkeypatch, tmp_path, storage, slow)
    slow.down = True
    await round_trip(r, 0, ENTRY0, STOP0)
    await round_trip(r, 2, ENTRY2, STOP2)
    assert await storage.trades.list_closed() == []
    slow.down = False
    await asyncio.gather(r.engine.sync_with_venue(), r.engine.stop())
    assert await storage.trades.list_closed() == r.engine.closed_trades
    assert len(r.engine.closed_trades) == 2


@pytest.mark.parametrize("outage", [False, True], ids=["database up", "database down"])
async def test_a_take_profit_that_filled_as_the_stop_closed_the_trade_is_reported_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, outage: bool
) -> None:
    """The venue fills the stop and, before our cancel comes, a take-profit too (a spot
    limit sell is not reduce-only). The sync hears the stop, closes the trade and cancels the
    leg (now or, the write-ahead refused, at the next sync); the venue answers the cancel
    with the leg filled: that fill is published once, whichever path heard it first."""
    r, storage, trades, kv = await entered_on_a_failing_disk(monkeypatch, tmp_path)
    first_leg = r.engine.trades[SYMBOL].working["TP1"]
    trades.down = kv.down = outage
    r.venue.script_fill(STOP0, D(98))
    r.venue.script_fill(first_leg, D(103))
    await r.engine.sync_with_venue()
    trades.down = kv.down = False
    await r.engine.sync_with_venue()
    await r.engine.sync_with_venue()

    leg_fills = [
        e for e in r.events if isinstance(e, OrderFilled) and e.client_order_id == first_leg
    ]
    assert [f.amount for f in leg_fills] == [r.venue.orders[first_leg].filled]
    stored = await storage.events.list_events("order.filled")
    assert [e.payload["client_order_id"] for e in stored].count(first_leg) == 1
    closed, late = r.engine.closed_trades  # the leg past the position booked on its own
    assert late.exit_reason == "LATE" and late.trade_id.startswith(first_leg)
    assert await storage.trades.list_closed() == [closed, late]
    assert SYMBOL not in r.engine.trades


@pytest.mark.parametrize("outage", [False, True], ids=["database up", "database down"])
async def test_a_take_profit_that_filled_after_the_stop_closed_the_trade_is_alerted(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    outage: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The same race: the leg's fill is past the position (the closed trade was recorded
    without it): booked as a record of its own (``test_late_fill_booked``), a critical alert
    names it, once, and nothing raises."""
    r, _, trades, kv = await entered_on_a_failing_disk(monkeypatch, tmp_path)
    first_leg = r.engine.trades[SYMBOL].working["TP1"]
    trades.down = kv.down = outage
    r.venue.script_fill(STOP0, D(98))
    r.venue.script_fill(first_leg, D(103))
    await r.engine.sync_with_venue()
    trades.down = kv.down = False
    await r.engine.sync_with_venue()
    said = [e for e in r.events if isinstance(e, AlertRaised) and first_leg in e.detail]
    assert [a.severity for a in said] == ["critical"]
    assert "after its trade" in said[0].detail and "15" in said[0].detail
    assert "on a closed exit plan" not in caplog.text  # raised by nothing
    closed, late = r.engine.closed_trades  # recorded once, as it closed; the leg on its own
    assert closed.exit_reason == "SL" and closed.amount == 50
    assert late.exit_reason == "LATE" and late.amount == 15


class DownDatabase(LockedWrites):
    """A key-value store that neither reads nor writes while ``down`` (an I/O error)."""

    async def get(self, key: StateKey) -> str | None:
        if self.down:
            raise StorageUnavailable("disk I/O error")
        return await super().get(key)


async def test_a_failure_of_the_next_process_is_not_answered_by_the_resume_of_the_kept_halt(
    tmp_path: Path,
) -> None:
    """Killed in an outage, the operator resumes while it is down (answering that halt); the
    next start finds the database failing again, reads too: it halts from the kept halt, and
    its own failure must need its own resume, not be lifted by the earlier one."""
    store = MemoryStorage()
    note = note_in(tmp_path)
    note.write(KeptHalt(1_000, "database is locked", ""))  # the killed process's
    cli = TradingStateService(store.state, EventBus(), SimClock(2_000))
    await cli.set(TradingState.ACTIVE, reason="looked, all fine", actor="cli")
    db = DownDatabase(store.state)
    db.down = True
    clock = SimClock(3_000)
    second = TradingStateService(db, EventBus(), clock, note=note)  # type: ignore[arg-type]
    assert await second.current() is TradingState.HALTED
    await second.fail_closed("disk I/O error")  # its own failure, after that resume
    db.down = False
    clock.advance_to(4_000)
    assert await second.current() is TradingState.HALTED
    assert await store.state.get(StateKey.TRADING_STATE) == "halted"
    again = TradingStateService(store.state, EventBus(), SimClock(5_000))
    await again.set(TradingState.ACTIVE, reason="disk replaced", actor="cli")
    assert await second.current() is TradingState.ACTIVE


async def test_a_kept_halt_over_a_daily_loss_halt_is_written_so_the_next_day_does_not_lift_it(
    tmp_path: Path,
) -> None:
    """The database held the risk limits' daily loss halt when it failed; the process was
    killed before its storage halt reached it. The risk limits lift their own halt at the next
    UTC day (its reason and marks unchanged): the restart must put the storage halt in its
    place, not take the daily one for it."""
    store = MemoryStorage()
    limits = TradingStateService(store.state, EventBus(), SimClock(500))
    await limits.set(TradingState.HALTED, reason="daily loss limit reached", actor="risk")
    note = note_in(tmp_path)
    note.write(KeptHalt(1_000, "database is locked", ""))  # no resume ever seen
    second = TradingStateService(store.state, EventBus(), SimClock(2_000), note=note)
    assert await second.current() is TradingState.HALTED
    assert await second.reason() == "storage failure: database is locked"
    assert note.read() is None


async def test_a_storage_halt_written_once_the_database_is_back_keeps_no_secret(
    tmp_path: Path,
) -> None:
    """The error that halted may quote a secret (a database URL's password); the note and
    the audit event are masked, and so must the reason the halt leaves in the database."""
    from core.redaction import REDACTED, Redactor, install_redactor, process_redactor

    secret = "PW-0123456789abcdef"
    store = MemoryStorage()
    db = LockedWrites(store.state)
    svc = TradingStateService(db, EventBus(), SimClock(1_000), note=note_in(tmp_path))  # type: ignore[arg-type]
    before = process_redactor()
    install_redactor(Redactor([secret]))
    try:
        db.down = True
        await svc.fail_closed(f"cannot write postgresql://qt:{secret}@db/qt")
        db.down = False
        assert await svc.current() is TradingState.HALTED
    finally:
        install_redactor(before)
    stored = await store.state.get(StateKey.TRADING_STATE_REASON) or ""
    assert secret not in stored and REDACTED in stored
