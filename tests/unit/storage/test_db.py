"""Engine set-up and the SQL unit of work."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from core.errors import ConfigError
from core.ports import StateKey
from storage.db import create_engine, parse_sqlite_url, sync_url
from storage.repositories import SqlStorage


def test_unsupported_urls_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="postgresql"):
        create_engine("postgresql://localhost/qt")
    with pytest.raises(ConfigError, match="not a valid database URL"):
        create_engine("::nonsense::")


def test_engine_creates_the_parent_directory(tmp_path: Path) -> None:
    create_engine(f"sqlite+aiosqlite:///{tmp_path}/a/b/qt.sqlite3")
    assert (tmp_path / "a" / "b").is_dir()


def test_sync_url_swaps_the_driver(tmp_path: Path) -> None:
    assert sync_url(f"sqlite+aiosqlite:///{tmp_path}/q.db") == f"sqlite:///{tmp_path}/q.db"


async def test_atomic_takes_the_write_lock_up_front(tmp_path: Path) -> None:
    store = SqlStorage(f"sqlite+aiosqlite:///{tmp_path}/qt.sqlite3")
    await store.start()
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", record)
    try:
        async with store.atomic():
            await store.state.set(StateKey.TRADING_STATE, "active")
        await store.state.get(StateKey.TRADING_STATE)
    finally:
        await store.stop()
    begins = [s for s in seen if s.startswith("BEGIN")]
    assert begins == ["BEGIN IMMEDIATE", "BEGIN DEFERRED"]


async def test_concurrent_units_of_work_both_commit(tmp_path: Path) -> None:
    store = SqlStorage(f"sqlite+aiosqlite:///{tmp_path}/qt.sqlite3")
    await store.start()

    async def bump() -> None:
        # Read, yield to the other task, then write: the classic lost-update shape.
        async with store.atomic():
            value = int(await store.state.get(StateKey.LAST_CANDLE_MS) or "0")
            await asyncio.sleep(0)
            await store.state.set(StateKey.LAST_CANDLE_MS, str(value + 1))

    try:
        await asyncio.gather(bump(), bump(), bump())
        assert await store.state.get(StateKey.LAST_CANDLE_MS) == "3"
    finally:
        await store.stop()


async def test_a_database_locked_past_the_busy_timeout_is_storage_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    import storage.db as db
    from core.errors import StorageUnavailable

    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 50)  # instead of 10 s
    path = tmp_path / "locked.sqlite"
    storage = SqlStorage(f"sqlite+aiosqlite:///{path}")
    await storage.start()
    other = sqlite3.connect(path, isolation_level=None)  # another process, say a big import
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StorageUnavailable, match=f"the database {path} is locked by another"):
            await storage.state.set(StateKey.TRADING_STATE, "halted")
        with pytest.raises(StorageUnavailable, match=f"the database {path} is locked by another"):
            async with storage.atomic():
                await storage.state.set(StateKey.TRADING_STATE, "halted")
    finally:
        other.execute("ROLLBACK")
        other.close()
    await storage.state.set(StateKey.TRADING_STATE, "halted")  # fine once it is free again
    assert await storage.state.get(StateKey.TRADING_STATE) == "halted"
    await storage.stop()


def test_env_example_promises_only_the_database_urls_storage_accepts() -> None:
    # It used to say "any SQLAlchemy async URL works"; only SQLite through aiosqlite does.
    import re

    from storage import open_storage

    text = (Path(__file__).resolve().parents[3] / ".env.example").read_text()
    block = text[text.index("# --- database") : text.index("QT__DATABASE__URL=")]
    assert "any sqlalchemy" not in block.lower()
    examples = re.findall(r"\b[a-z][a-z0-9+]*://[^\s,;)]*", block)
    assert examples, "the comment shows what a URL looks like"
    for url in examples:
        parse_sqlite_url(url)  # every URL the comment shows is accepted (nothing is created)
    with pytest.raises(ConfigError, match=r"only SQLite.*sqlite\+aiosqlite"):
        open_storage("postgresql+asyncpg://qt@localhost/qt")  # refused before connecting


async def test_a_full_disk_is_storage_unavailable_naming_the_database(tmp_path: Path) -> None:
    from core.errors import StorageUnavailable
    from core.market.synthetic import generate_candles

    path = tmp_path / "full.sqlite"
    storage = SqlStorage(f"sqlite+aiosqlite:///{path}")
    await storage.start()
    await storage.engine.dispose()  # connections from now on get the cap below

    def no_room(dbapi_connection: Any, _record: Any) -> None:
        # SQLite's page cap (clamped to the file's size) fails a write as a full disk does.
        dbapi_connection.execute("PRAGMA max_page_count = 1")

    event.listen(storage.engine.sync_engine, "connect", no_room)
    series = generate_candles("BTC/USDT", "1h", 5000, seed=1, start_ms=1_704_067_200_000)
    try:
        with pytest.raises(StorageUnavailable) as caught:
            await storage.candles.upsert("binance", series)
    finally:
        await storage.stop()
    assert str(caught.value) == f"cannot write the database {path}: the disk is full"


def test_a_connection_losing_the_race_to_switch_a_new_database_to_wal_tries_again() -> None:
    """Connections opening a new database at once (processes starting together, the
    migrations' unlocked read) race to switch it to WAL; SQLite answers the losers "database
    is locked" at once, without its busy wait. The connection tries again instead of failing."""
    import sqlite3

    from storage.db import _on_connect

    class Racing:
        """A DB-API connection whose WAL switch loses the race twice."""

        isolation_level: str | None = ""

        def __init__(self) -> None:
            self.executed: list[str] = []
            self.lost = 0

        def cursor(self) -> Racing:
            return self

        def execute(self, sql: str) -> None:
            if sql == "PRAGMA journal_mode=WAL" and self.lost < 2:
                self.lost += 1
                raise sqlite3.OperationalError("database is locked")
            self.executed.append(sql)

        def close(self) -> None:
            pass

    racing = Racing()
    _on_connect(True)(racing, None)
    assert racing.lost == 2 and racing.executed[0] == "PRAGMA journal_mode=WAL"
    assert "PRAGMA busy_timeout=10000" in racing.executed  # the rest still set up
