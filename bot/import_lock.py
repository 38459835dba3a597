"""One candle import at a time per database, from its conflict check to its last write.

An import counts the stored candles its files would change, then writes in short batches (a
running bot never waits long behind it). Two imports of one series started together both
counted before either wrote, both wrote, and the series ended a mix of the two files with no
conflict reported. So an import holds a lock next to the database file for the whole of it; a
second one waits, then finds the first one's candles, and reports them as it would have after.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from bot.file_lock import FileLock, LockHeld
from core.market.candle_import import ImportStopped
from storage import MEMORY_URL
from storage.db import is_memory_url, parse_sqlite_url

POLL_S = 0.1


def import_lock_path(database_url: str) -> Path | None:
    """Return the lock file of the database's imports, or None for one no other process sees."""
    if database_url == MEMORY_URL:
        return None
    parsed = parse_sqlite_url(database_url)
    if is_memory_url(parsed) or str(parsed.database).startswith("file:"):
        return None
    return Path(f"{parsed.database}.import.lock")


@asynccontextmanager
async def import_lock(
    database_url: str,
    *,
    on_wait: Callable[[str], None],
    stop_requested: Callable[[], bool] = lambda: False,
) -> AsyncIterator[None]:
    """Hold the database's import lock for the block; ``on_wait(holder)`` is called once if
    another import has it. A stop requested while waiting is ``ImportStopped``."""
    path = import_lock_path(database_url)
    if path is None:
        yield
        return
    lock = FileLock(path)
    told = False
    while True:
        try:
            lock.acquire()
            break
        except LockHeld as held:
            if stop_requested():
                raise ImportStopped(0) from None
            if not told:
                on_wait(held.holder)
                told = True
            await asyncio.sleep(POLL_S)
    try:
        yield
    finally:
        lock.release()
