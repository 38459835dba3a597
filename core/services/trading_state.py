"""The persisted trading state (ACTIVE / REDUCING / HALTED).

The state lives in the key-value store so a halt survives a restart; every change is published
as ``TradingStateChanged``. The risk gate reads it from the store for every order, so a change
made by another process on the same database (``qt state halt``) stops the next order; it is
published (actor "another process") the first time this process reads it, which the console
does every few seconds. A resume while already active is published too (ACTIVE -> ACTIVE): it
still clears what waits for an operator (symbols paused after a failure, ``SymbolHealth``).

A database that cannot be written halts trading in memory at once (``fail_closed``) and on disk
as soon as it takes writes. Meanwhile the halt is kept in a ``HaltNote`` (a file beside the
database), so a process killed during the outage leaves it to the next: that one starts
HALTED and writes the halt to the database, unless an operator resumed since.
"""

from __future__ import annotations

import logging
import secrets

from core.clock import Clock
from core.domain.enums import TradingState
from core.domain.events import TradingStateChanged
from core.errors import StorageUnavailable
from core.ports import HaltNote, KeptHalt, KeyValueRepo, StateKey
from core.redaction import process_redactor
from core.services.bus import EventBus
from core.services.order_gate import OrderGate

log = logging.getLogger(__name__)


class TradingStateService:
    """Read and change the trading state; the store is the truth, read on every ``current()``."""

    def __init__(
        self, state: KeyValueRepo, bus: EventBus, clock: Clock, note: HaltNote | None = None
    ) -> None:
        self._state = state
        self._note = note  # the storage halt while it is not in the database yet
        self._bus = bus
        self._clock = clock
        self._current: TradingState | None = None
        self._resumed: str | None = None  # the last resume seen (StateKey.RESUMED_MS)
        # Why trading failed closed (the database could not be written), until the halt is
        # on disk: then an operator resumes it like any halt.
        self._forced: str | None = None
        self._forced_ms = 0  # when trading failed closed (this process's clock)
        self._inherited = False  # the forced halt is the one the last process kept
        # Held by each order from its gate check to the venue's answer (ExecutionService), side
        # by side, and alone by a halt or reduce while it is written: an order checked before
        # the halt is sent before the halt is acknowledged, none after it.
        self.order_gate = OrderGate()

    @property
    def store(self) -> KeyValueRepo:
        """Return the store the state lives in (the risk limits keep theirs next to it)."""
        return self._state

    @property
    def cached(self) -> TradingState | None:
        """Return the last state read, without I/O (None before the first read)."""
        return self._current

    async def current(self) -> TradingState:
        """Return the stored state (ACTIVE when none was ever set).

        A value that is not a state (a hand-edited database) reads as HALTED: when in doubt,
        trade nothing. A change made elsewhere is logged the first time it is seen.
        """
        if self._current is None and self._forced is None:
            await self._take_over_note()
        if self._forced is not None:
            return await self._hold_forced_halt()
        try:
            raw = await self._state.get(StateKey.TRADING_STATE)
        except StorageUnavailable as exc:
            await self.fail_closed(str(exc))
            return TradingState.HALTED
        try:
            state = TradingState(raw) if raw else TradingState.ACTIVE
        except ValueError:
            log.error("stored trading state %r is not one of %s: halted", raw, _NAMES)
            state = TradingState.HALTED
        previous, self._current = self._current, state
        resumed = await self._resume_seen()
        if previous is not None and (state is not previous or resumed):
            reason = await self.reason()
            log.warning(
                "trading state %s outside this process: %s -> %s (%s)",
                "changed" if state is not previous else "resumed",
                previous.value,
                state.value,
                reason,
            )
            # Published like our own changes, so the process reacts the same way (a halt
            # cancels the entries still waiting) as soon as anything reads the state.
            await self._bus.publish(
                TradingStateChanged(
                    ts_ms=self._clock.now_ms(),
                    previous=previous.value,
                    current=state.value,
                    reason=reason,
                    actor="another process",
                )
            )
        return state

    async def _resume_seen(self) -> bool:
        """Return True when another process resumed since the last read (its mark moved)."""
        try:
            mark = await self._state.get(StateKey.RESUMED_MS)
        except StorageUnavailable:
            return False
        seen, self._resumed = self._resumed, mark
        return seen != mark and self._current is TradingState.ACTIVE

    async def fail_closed(self, reason: str) -> None:
        """Halt trading because the database cannot be written: at once, in memory (new
        exposure stops; stops and exits still go), and on disk as soon as it can be written,
        so the halt survives a restart and an operator resumes it (``qt state resume``)."""
        if self._forced is None and self._current is None:
            # Failing before this process read the state: the last one's kept halt first,
            # and the resume seen now (else any resume stored before would read as one since).
            await self._take_over_note()
            if self._forced is None:
                self._resumed = await self._resume_mark()
        if self._forced is not None:
            if self._inherited:
                # This process's own failure on top of the halt the last one kept: a resume
                # that answered that halt (made before this start) must not lift this one.
                self._inherited = False
                self._forced_ms = self._clock.now_ms()
                self._keep_note()
            return
        self._forced, self._forced_ms, self._inherited = reason, self._clock.now_ms(), False
        self._keep_note()
        log.critical("the database cannot be written: trading HALTED (%s)", reason)
        await self._announce_forced(reason)

    async def _resume_mark(self) -> str | None:
        """Return the stored resume mark (None: none, or it cannot be read)."""
        try:
            return await self._state.get(StateKey.RESUMED_MS)
        except StorageUnavailable:
            return None

    async def _take_over_note(self) -> None:
        """At the first read: a storage halt an earlier process kept outside the database
        and died with (killed during the outage) halts this one too."""
        if self._note is None:
            return
        kept = self._note.read()
        if kept is None:
            return
        if await self._halt_in_database(kept):
            log.warning(
                "the last process ended after its storage halt (%s) reached the database: "
                "trading stays HALTED until resumed",
                kept.reason,
            )
            self._drop_note()
            return
        self._forced_ms, reason, resume_seen = kept
        self._inherited = True
        self._resumed = resume_seen or None  # a resume since then lifts it, not one before
        log.critical(
            "the last process halted trading (the database could not be written: %s) and "
            "ended before the halt reached the database: trading HALTED",
            reason,
        )
        await self._announce_forced(reason)

    async def _halt_in_database(self, kept: KeptHalt) -> bool:
        """Return True when the database holds this very halt and nobody resumed since the
        halting process's last read: killed after writing its halt, before removing the note.
        That halt holds until a resume, as the kept one would (announced again, it would
        alert a second time for one outage). Another halt there is not it: the risk limits
        lift their own at the next UTC day."""
        try:
            state = await self._state.get(StateKey.TRADING_STATE)
            reason = await self._state.get(StateKey.TRADING_STATE_REASON) or ""
            mark = await self._state.get(StateKey.RESUMED_MS)
        except StorageUnavailable:
            return False
        return (
            state == TradingState.HALTED.value
            and process_redactor().text(reason) == f"storage failure: {kept.reason}"
            and (mark or "") == kept.resume_seen
        )

    def _keep_note(self) -> None:
        if self._note is None:
            return
        try:
            reason = process_redactor().text(self._forced or "")
            self._note.write(KeptHalt(self._forced_ms, reason, self._resumed or ""))
        except OSError as e:  # the same full disk, say: the halt holds in memory still
            log.error("the storage halt could not be kept beside the database either: %s", e)

    def _drop_note(self) -> None:
        if self._note is None:
            return
        try:
            self._note.clear()
        except OSError as e:
            log.error("the kept storage halt could not be removed: %s", e)

    async def _announce_forced(self, reason: str) -> None:
        previous = self._current or TradingState.ACTIVE
        self._forced, self._current = reason, TradingState.HALTED
        await self._bus.publish(
            TradingStateChanged(
                ts_ms=self._clock.now_ms(),
                previous=previous.value,
                current=TradingState.HALTED.value,
                reason=f"storage failure: {reason}",
                actor="storage",
            )
        )

    async def _hold_forced_halt(self) -> TradingState:
        """Try to put the fail-closed halt on disk; stay HALTED either way, unless an operator
        resumed since the failure: their resume (written once the database took writes again,
        before this process could write its halt) answers this halt and is not written over."""
        if await self._resumed_since_forced():
            log.warning(
                "the database is writable again and an operator resumed trading since the "
                "storage failure (%s): the halt is lifted",
                self._forced,
            )
            self._forced = None
            self._drop_note()
            return await self.current()
        try:
            await self._state.set(StateKey.TRADING_STATE, TradingState.HALTED.value)
            reason = process_redactor().text(f"storage failure: {self._forced}")  # stored
            await self._state.set(StateKey.TRADING_STATE_REASON, reason)
        except StorageUnavailable:
            return TradingState.HALTED
        log.warning("the database is writable again; trading stays HALTED until resumed")
        self._forced = None
        self._drop_note()
        return TradingState.HALTED

    async def _resumed_since_forced(self) -> bool:
        """Return True when the stored resume mark is not the last one the halting process
        had seen and was made at or after the fail-closed halt (a resume from before it
        answered an older halt). Both: a mark's time is its writer's clock."""
        mark = await self._resume_mark()
        if not mark or mark == self._resumed:
            return False
        return resume_answers(mark, self._forced_ms)

    async def _write(self, new: TradingState, reason: str) -> None:
        await self._state.set(StateKey.TRADING_STATE, new.value)
        await self._state.set(StateKey.TRADING_STATE_REASON, reason)
        self._current = new

    async def reason(self) -> str:
        """Return why the state was last set ("" if never)."""
        return await self._state.get(StateKey.TRADING_STATE_REASON) or ""

    async def set(self, new: TradingState, *, reason: str, actor: str) -> bool:
        """Persist ``new`` first, then publish; return False when nothing changed."""
        previous = await self.current()
        if new is not TradingState.ACTIVE:
            # Marked at every halt or reduce asked for, even on top of one: whoever would
            # lift a halt of its own (the risk limits, the next UTC day) sees another came.
            await self._state.set(
                StateKey.HALT_MARK, f"{self._clock.now_ms()}:{secrets.token_hex(4)}"
            )
        if new is previous and new is not TradingState.ACTIVE:
            return False
        reason = process_redactor().text(reason)  # stored: it may quote an error's text
        if new is TradingState.ACTIVE:
            self._resumed = f"{self._clock.now_ms()}:{secrets.token_hex(4)}"  # unique per resume
            await self._state.set(StateKey.RESUMED_MS, self._resumed)
            await self._write(new, reason)
        else:
            async with self.order_gate.hold_alone():  # the orders being sent go first, none after
                await self._write(new, reason)
        await self._bus.publish(
            TradingStateChanged(
                ts_ms=self._clock.now_ms(),
                previous=previous.value,
                current=new.value,
                reason=reason,
                actor=actor,
            )
        )
        return new is not previous  # a resume while active is published, but changed nothing


def resume_answers(mark: str, since_ms: int) -> bool:
    """Return True when the resume ``mark`` ("<ms>:<token>", its writer's clock) was made at
    or after ``since_ms``: a resume that can answer a halt made then."""
    resumed_ms = mark.partition(":")[0]  # isascii: '²' is a digit to isdigit, not to int
    return resumed_ms.isascii() and resumed_ms.isdigit() and int(resumed_ms) >= since_ms


_NAMES = ", ".join(s.value for s in TradingState)
