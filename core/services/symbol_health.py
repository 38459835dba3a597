"""Symbols failed closed: an unexpected error in one symbol's cycle stops its entries, not
the process.

A failed symbol takes no new entry (its open trade's exits are still managed) until it has run
``base_candles`` candles without failing again (it recovers), or an operator resumes trading.
Each failure before an operator's resume doubles the wait (capped at ``max_candles``), so a bug
that returns on every entry costs one failed attempt per window, not one per candle. The wait
is measured in candle time, not in cycles run, so a fast replay that skips idle candles and a
full one decide the same.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from core.values import value_class


@value_class(frozen=True, slots=True)
class SymbolFailure:
    """Why and since when a symbol takes no entries."""

    error: str  # "KeyError: 'x'"
    failed_ms: int  # open time of the candle whose cycle failed
    strikes: int  # failures since the last operator resume
    until_ms: int  # entries allowed again from a candle opening at this time
    blocking: bool = True  # False once recovered (the strikes stay until an operator resumes)


class SymbolHealth:
    """The failed symbols of one engine (see module docstring)."""

    def __init__(self, candle_ms: int, *, base_candles: int = 24, max_candles: int = 24 * 30):
        self._base_ms = candle_ms * base_candles
        self._max_ms = candle_ms * max_candles
        self.failures: dict[str, SymbolFailure] = {}

    def fail(self, symbol: str, candle_ms: int, error: str) -> SymbolFailure:
        """Record a failure of ``symbol``'s cycle on the candle opening at ``candle_ms``."""
        previous = self.failures.get(symbol)
        strikes = previous.strikes + 1 if previous else 1
        wait = min(self._base_ms * 2 ** (strikes - 1), self._max_ms)
        failure = SymbolFailure(error, candle_ms, strikes, candle_ms + wait)
        self.failures[symbol] = failure
        return failure

    def blocks(self, symbol: str) -> SymbolFailure | None:
        """Return the failure that keeps ``symbol`` from entering, if any."""
        failure = self.failures.get(symbol)
        return failure if failure is not None and failure.blocking else None

    def recover(self, symbol: str, candle_ms: int) -> SymbolFailure | None:
        """Let ``symbol`` enter again if its wait is over at ``candle_ms``; return the failure
        it recovered from (None if it was not blocked or still waits)."""
        failure = self.blocks(symbol)
        if failure is None or candle_ms < failure.until_ms:
            return None
        self.failures[symbol] = replace(failure, blocking=False)
        return failure

    def clear(self) -> list[str]:
        """Forget every failure (an operator resumed trading); return the symbols that were
        still blocked."""
        blocked = [s for s, f in self.failures.items() if f.blocking]
        self.failures.clear()
        return blocked

    # --- persistence ----------------------------------------------------------------------------

    def dump(self) -> dict[str, dict[str, Any]]:
        return {
            s: {
                "error": f.error,
                "failed_ms": f.failed_ms,
                "strikes": f.strikes,
                "until_ms": f.until_ms,
                "blocking": f.blocking,
            }
            for s, f in self.failures.items()
        }

    def load(self, data: dict[str, dict[str, Any]]) -> None:
        self.failures = {
            str(s): SymbolFailure(
                str(f["error"]),
                int(f["failed_ms"]),
                int(f["strikes"]),
                int(f["until_ms"]),
                bool(f["blocking"]),
            )
            for s, f in data.items()
        }
