"""One migration of a database file at a time; every other process waits for it to finish.

SQLite's busy timeout (10 s) bounds how long a writer waits for the write lock. A migration
that rewrites millions of candles holds it longer (0002 copies 11 M of them in ~17 s), so a
command started meanwhile gave up with "database is locked". The migrating process holds this
lock (a POSIX ``flock`` on ``<database>.migrate-lock``, released by the operating system
however the process ends) for the whole migration; a process that finds the schema out of date
waits on it as long as the migration runs, then takes SQLite's lock and finds the schema
current. Processes that find the schema current never touch it.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

log = logging.getLogger(__name__)

POLL_S = 0.05
SAY_WAITING_AFTER_S = 1.0


def lock_path(database: str) -> Path:
    """Return the lock file of the database file ``database``."""
    return Path(f"{database}.migrate-lock")


@asynccontextmanager
async def migration_lock(database: str) -> AsyncIterator[None]:
    """Hold the migration lock of ``database`` for the block, waiting for it as long as it
    takes (polled, so Ctrl-C still stops the wait)."""
    try:
        handle = lock_path(database).open("a")
    except OSError:
        # A folder we may not write: SQLite cannot use the database there either, and says so.
        yield
        return
    try:
        started = time.monotonic()
        said = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not said and time.monotonic() - started >= SAY_WAITING_AFTER_S:
                    log.warning("waiting for another process to finish migrating %s", database)
                    said = True
                await asyncio.sleep(POLL_S)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()
