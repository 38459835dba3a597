"""The engine's locks: one per symbol for that symbol's trade work, and the helpers to take
them without losing a cancellation or letting one symbol's slow venue calls hold up another's.

Why per symbol: against a venue that times out, one symbol's order work (an entry's submit,
a sync's cancels and re-placements, each retried with backoff) takes seconds to minutes; a
single engine lock made every other symbol's fresh fill wait that long for its stop. What is
truly shared is the decision to open (the open-position count, the exposure, the account the
entry is sized on): ``Engine`` keeps one lock for it, held by one entry at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

_T = TypeVar("_T")


class SymbolLocks:
    """One ``asyncio.Lock`` per symbol, made on first use (symbols are few and never
    dropped: a lock is a few hundred bytes)."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    def of(self, symbol: str) -> asyncio.Lock:
        """Return ``symbol``'s lock."""
        lock = self._locks.get(symbol)
        if lock is None:
            lock = self._locks[symbol] = asyncio.Lock()
        return lock


async def acquire_even_if_cancelled(lock: asyncio.Lock) -> None:
    """Acquire ``lock``; a cancellation while waiting for it is raised once it is held (the
    caller's ``async with`` releases it on the way out, as it expects to)."""
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            await lock.acquire()
        except asyncio.CancelledError as e:
            cancelled = e
            continue
        break
    if cancelled is not None:
        raise cancelled


async def all_of(work: Sequence[Coroutine[Any, Any, _T]]) -> list[_T]:
    """Await every one of ``work`` at once and return their results in order; once all have
    ended, raise the first error any of them raised (each runs to its end: one symbol's
    failure must not cut another's work short). Cancelled, cancel them all."""
    if len(work) <= 1:  # nothing to run beside: in this task, as it always ran
        return [await w for w in work]
    tasks = [asyncio.ensure_future(w) for w in work]
    try:
        await asyncio.wait(tasks)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for task in tasks:
        error = task.exception()
        if error is not None:
            raise error
    return [task.result() for task in tasks]
