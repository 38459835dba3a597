"""The persisted trading state (ACTIVE / REDUCING / HALTED).

The state lives in the key-value store so a halt survives a restart; every change is published
as ``TradingStateChanged``. The risk gate (engine issue) reads it for every order.
"""

from __future__ import annotations

from core.clock import Clock
from core.domain.enums import TradingState
from core.domain.events import TradingStateChanged
from core.ports import KeyValueRepo, StateKey
from core.services.bus import EventBus


class TradingStateService:
    """Read and change the trading state; the store is the truth, the cache is for speed."""

    def __init__(self, state: KeyValueRepo, bus: EventBus, clock: Clock) -> None:
        self._state = state
        self._bus = bus
        self._clock = clock
        self._current: TradingState | None = None

    @property
    def cached(self) -> TradingState | None:
        """Return the last known state without I/O (None before the first read)."""
        return self._current

    async def current(self) -> TradingState:
        """Return the state, loading it from the store on first use (default ACTIVE)."""
        if self._current is None:
            raw = await self._state.get(StateKey.TRADING_STATE)
            self._current = TradingState(raw) if raw else TradingState.ACTIVE
        return self._current

    async def set(self, new: TradingState, *, reason: str, actor: str) -> bool:
        """Persist ``new`` first, then publish; return False when nothing changed."""
        previous = await self.current()
        if new is previous:
            return False
        await self._state.set(StateKey.TRADING_STATE, new.value)
        await self._state.set(StateKey.TRADING_STATE_REASON, reason)
        self._current = new
        await self._bus.publish(
            TradingStateChanged(
                ts_ms=self._clock.now_ms(),
                previous=previous.value,
                current=new.value,
                reason=reason,
                actor=actor,
            )
        )
        return True
