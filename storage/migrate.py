"""Run the Alembic migrations shipped inside this package (no alembic.ini, independent of CWD).

``upgrade(url)`` is what ``qt db upgrade`` and start-up call; it runs inside the event loop by
handing Alembic the engine's connection through ``run_sync``, so in-memory databases are migrated
on the very connection the application then uses.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager, nullcontext
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from core.errors import OperationalError
from storage.db import busy_timeout_s, create_engine, is_memory_url, parse_sqlite_url, sync_url
from storage.migration_lock import migration_lock
from storage.sqlite_errors import is_file_failure, unusable

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    """Return an Alembic config pointing at the packaged migrations (and ``url`` if given)."""
    config = Config()
    # ConfigParser interpolates '%', so escape it in paths and URLs.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if url is not None:
        config.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return config


def head_revision() -> str:
    """Return the newest revision id shipped with the code."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise RuntimeError(f"no Alembic revisions found in {MIGRATIONS_DIR}")
    return head


def _upgrade_on(connection: Connection, revision: str) -> None:
    config = alembic_config()
    current = MigrationContext.configure(connection).get_current_revision()
    known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    if current is not None and current not in known:
        # Alembic would say "Can't locate revision": the schema is from a newer program.
        raise OperationalError(
            f"the database {_where(connection)} is at revision {current}, which this version "
            f"does not know (its newest is {head_revision()}): it was written by a newer "
            "version of Quantum Trader; run that one, or set QT__DATABASE__URL to another file"
        )
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _where(connection: Connection) -> str:
    return connection.engine.url.database or "in memory"


async def upgrade_engine(engine: AsyncEngine, revision: str = "head") -> None:
    """Migrate the engine's database to ``revision`` in one transaction.

    A schema already at the newest revision is only read (a WAL reader waits for no writer:
    a command run while another process writes does not queue behind it). Otherwise the
    migration lock is taken (``storage.migration_lock``: a process started during a long
    migration waits for its end, however long), then SQLite's write lock, before Alembic reads
    the schema: two processes starting on a new database would otherwise both read "no schema"
    and the second to write would fail with "database is locked" (its snapshot is stale;
    waiting cannot help). Under the lock, the second finds the schema current.
    """
    database = engine.url.database
    where = database or "in memory"
    await asyncio.to_thread(_check_file, database)
    try:
        if revision == "head" and await _revision_of(engine) == head_revision():
            return
        async with _lock_of(database):
            async with engine.connect() as conn:
                conn = await conn.execution_options(sqlite_begin="IMMEDIATE")
                async with conn.begin():
                    await conn.run_sync(_upgrade_on, revision)
    except DBAPIError as exc:
        raise _unusable(exc, where) from exc


async def _revision_of(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


def _lock_of(database: str | None) -> AbstractAsyncContextManager[None]:
    if database is None or not _is_plain_file(database):
        return nullcontext()  # in memory: no other process can see it
    return migration_lock(database)


def _is_plain_file(database: str | None) -> bool:
    return bool(database) and database != ":memory:" and not str(database).startswith("file:")


def _check_file(database: str | None) -> None:
    """Open the database file as a plain file first (creating it, as SQLite would).

    A path SQLite cannot open (a folder, a folder we may not write) then fails here with its
    reason. Through aiosqlite it fails in a worker thread that outlives the failed connect
    and may report to an event loop that has closed: a traceback after our message.
    """
    if database is None or not _is_plain_file(database):
        return
    try:
        with Path(database).open("ab"):
            pass
    except OSError as exc:
        raise OperationalError(
            f"cannot open the database {database}: {exc.strerror or exc}"
        ) from exc


def _unusable(exc: DBAPIError, where: str) -> Exception:
    """Return the clear error for a database file SQLite cannot use (locked past the busy
    timeout, full, damaged, not SQLite, cannot be opened), else ``exc`` (a bug: traceback)."""
    if not is_file_failure(exc):
        return exc
    return unusable(exc, where, busy_timeout_s())


async def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` to ``revision`` (default: the newest)."""
    engine = create_engine(url)
    try:
        await upgrade_engine(engine, revision)
    finally:
        await engine.dispose()


def current_revision(url: str) -> str | None:
    """Return the database's current revision, or None when it has none (or does not exist)."""
    parsed = parse_sqlite_url(url)
    if is_memory_url(parsed):
        return None  # a fresh private in-memory database is always empty
    if parsed.database and not Path(parsed.database).expanduser().exists():
        return None  # do not create the file just to look at it
    engine = create_sync_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except DBAPIError as exc:
        raise _unusable(exc, parsed.database or "in memory") from exc
    finally:
        engine.dispose()
