"""The async engine and the unit of work.

``create_engine(url)`` returns an ``AsyncEngine`` whose every SQLite connection is set up the same
way: WAL journal (file databases), foreign keys on, ``synchronous=NORMAL`` and a busy timeout.
SQLAlchemy, not the ``sqlite3`` module, emits ``BEGIN`` so that transactions and savepoints behave
as written (the sqlite3 module's legacy mode starts transactions late and breaks SAVEPOINT).

``UnitOfWork`` binds one ``AsyncSession`` to a context variable for the duration of
``atomic()``; repositories call ``uow.connection()`` and get that session's connection inside the
block, or a fresh short transaction outside it. Nothing holds a session at module or class level.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, MissingGreenlet, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import StaticPool
from sqlalchemy.util import await_only

from core.errors import ConfigError, StorageUnavailable
from core.redaction import masked_url, process_redactor
from storage.sqlite_errors import explain, is_file_failure

BUSY_TIMEOUT_MS = 10_000
WAL_RETRY_S = 0.01  # between tries to switch a new database to WAL


def busy_timeout_s() -> float:
    """Return how long a connection waits for another's write lock before it fails."""
    return BUSY_TIMEOUT_MS / 1000


def parse_sqlite_url(url: str) -> URL:
    """Return the parsed URL; only ``sqlite+aiosqlite`` URLs are supported (the repositories
    use SQLite's upserts and locking: another database needs its own repositories)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(
            f"storage URL {masked_url(url)!r} is not a valid database URL: "
            f"{process_redactor().text(str(exc))}"
        ) from exc
    if parsed.drivername != "sqlite+aiosqlite":
        raise ConfigError(
            f"storage URL driver was {parsed.drivername!r}; only SQLite is supported, as "
            "'sqlite+aiosqlite' (e.g. sqlite+aiosqlite:///data/qt.sqlite3), or 'memory://'"
        )
    if parsed.username or parsed.password or parsed.host or parsed.port:
        # SQLAlchemy's own refusal is a traceback; a password there is masked, not echoed.
        raise ConfigError(
            f"storage URL {masked_url(url)!r} names a user, password or host: a SQLite URL "
            "names a file only (sqlite+aiosqlite:///relative/file.sqlite or "
            "sqlite+aiosqlite:////absolute/file.sqlite)"
        )
    if parsed.database and parsed.database.startswith("~"):
        # SQLite opens paths as given: "~/qt.sqlite" would be a folder named "~" in the CWD.
        parsed = parsed.set(database=str(Path(parsed.database).expanduser()))
    return parsed


def is_memory_url(parsed: URL) -> bool:
    """Return True when the URL names a private in-memory SQLite database."""
    return parsed.database in (None, "", ":memory:")


def database_file(url: str) -> Path | None:
    """Return the file of the database ``url`` names (None: in memory, ``memory://`` or a
    ``file:`` URI), beside which the files that outlive a process are kept."""
    if url.startswith("memory://"):
        return None
    parsed = parse_sqlite_url(url)
    database = parsed.database
    if is_memory_url(parsed) or not database or database.startswith("file:"):
        return None
    return Path(database)


def sync_url(url: str) -> str:
    """Return the same database with the blocking ``sqlite`` driver (for Alembic in a thread)."""
    return parse_sqlite_url(url).set(drivername="sqlite").render_as_string(hide_password=False)


def _on_connect(is_file: bool) -> Any:
    def configure(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (see the "begin" listener below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if is_file:
                _switch_to_wal(cursor)
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    return configure


def _switch_to_wal(cursor: Any) -> None:
    """Set the WAL journal, trying again while the database is locked (within the busy
    timeout): connections racing to switch a new database answer the losers "database is
    locked" at once (SQLite skips the busy wait on a lock upgrade that could deadlock)."""
    deadline = time.monotonic() + busy_timeout_s()
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        _pause(WAL_RETRY_S)


def _pause(seconds: float) -> None:
    """Sleep; on the async engine's greenlet, by awaiting, so the event loop runs meanwhile."""
    nap = asyncio.sleep(seconds)
    try:
        await_only(nap)
    except MissingGreenlet:  # the blocking engine (Alembic's, in a thread)
        nap.close()
        time.sleep(seconds)


def _on_begin(conn: Connection) -> None:
    # IMMEDIATE takes the write lock up front so a unit of work that reads, then writes,
    # cannot fail with SQLITE_BUSY on lock upgrade; plain calls stay DEFERRED.
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def create_engine(url: str) -> AsyncEngine:
    """Return an engine for ``url``, creating the database file's directory if needed."""
    parsed = parse_sqlite_url(url)
    in_memory = is_memory_url(parsed)
    kwargs: dict[str, Any] = {}
    if in_memory:
        # One shared connection, or every checkout would see its own empty database.
        kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    elif parsed.database and not parsed.database.startswith("file:"):
        folder = Path(parsed.database).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the folder {folder} of the database: {exc.strerror or exc}"
            ) from exc
    engine = create_async_engine(parsed, **kwargs)
    event.listen(engine.sync_engine, "connect", _on_connect(is_file=not in_memory))
    event.listen(engine.sync_engine, "begin", _on_begin)
    return engine


class UnitOfWork:
    """Hand repositories a connection: the ambient ``atomic()`` one, or a short transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._session: ContextVar[AsyncSession | None] = ContextVar(
            f"qt_session_{id(self)}", default=None
        )

    @asynccontextmanager
    async def atomic(self) -> AsyncIterator[None]:
        """Run the block in one transaction; nested blocks become savepoints. A database that
        cannot be written (locked past the busy timeout, disk full) is ``StorageUnavailable``."""
        outer = self._session.get()
        if outer is not None:
            async with outer.begin_nested():
                yield
            return
        try:
            async with AsyncSession(self.engine, expire_on_commit=False) as session:
                await session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
                token = self._session.set(session)
                try:
                    yield
                    await session.commit()
                except BaseException:
                    await session.rollback()
                    raise
                finally:
                    self._session.reset(token)
        except (DBAPIError, sqlite3.Error) as exc:
            unavailable = self._unavailable(exc)
            if unavailable is None:
                raise
            raise unavailable from exc

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """Yield the ambient unit of work's connection, or one committed when the block ends."""
        session = self._session.get()
        if session is not None:
            yield await session.connection()
            return
        try:
            async with self.engine.begin() as conn:
                yield conn
        except (DBAPIError, sqlite3.Error) as exc:
            unavailable = self._unavailable(exc)
            if unavailable is None:
                raise
            raise unavailable from exc

    def _unavailable(self, exc: DBAPIError | sqlite3.Error) -> StorageUnavailable | None:
        """Return ``StorageUnavailable`` naming the database for a failure of its file (and,
        as ever, for any operational error: the process fails closed), else None: a bad
        statement or a broken constraint is the caller's bug. The candle loads' driver-level
        reads fail with the driver's own errors, hence ``sqlite3.Error`` too."""
        if not (
            isinstance(exc, OperationalError | sqlite3.OperationalError) or is_file_failure(exc)
        ):
            return None
        where = self.engine.url.database or "in memory"
        return StorageUnavailable(explain(exc, where, busy_timeout_s()))
