"""The packaged Alembic migrations build exactly the schema of storage.tables."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, event, inspect
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

import storage.tables  # noqa: F401 - registers the tables
from core.domain.enums import CandleMarket
from core.domain.model_versions import ModelStatus
from storage.db import create_engine
from storage.migrate import (
    alembic_config,
    current_revision,
    head_revision,
    upgrade,
    upgrade_engine,
)
from storage.repositories import SqlStorage

EXPECTED_TABLES = {
    "candles",
    "market_rules",
    "orders",
    "fills",
    "positions",
    "balances",
    "equity_snapshots",
    "events",
    "kv_state",
    "policy_versions",
    "risk_assessments",
    "model_versions",
    "brain_decisions",
    "model_predictions",
    "trades",
}


def _url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def _columns_by_table(path: Path) -> dict[str, list[str]]:
    with sqlite3.connect(path) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: [r[1] for r in conn.execute(f"PRAGMA table_info('{n}')")] for n in names}


async def test_upgrade_from_empty_creates_every_table(tmp_path: Path) -> None:
    db = tmp_path / "nested" / "dir" / "qt.sqlite3"
    assert current_revision(_url(db)) is None
    assert not db.exists()  # looking did not create it
    await upgrade(_url(db))
    assert set(_columns_by_table(db)) == EXPECTED_TABLES | {"alembic_version"}
    assert current_revision(_url(db)) == head_revision() == "0006"


async def test_upgrade_twice_is_a_no_op_and_keeps_data(tmp_path: Path) -> None:
    db = tmp_path / "qt.sqlite3"
    await upgrade(_url(db))
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO kv_state (key, value) VALUES ('k', 'v')")
    await upgrade(_url(db))
    assert current_revision(_url(db)) == head_revision()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM kv_state").fetchall() == [("v",)]


async def test_migrations_are_found_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    await upgrade("sqlite+aiosqlite:///relative.sqlite3")
    assert current_revision(_url(tmp_path / "relative.sqlite3")) == head_revision()


async def test_file_database_uses_wal_and_enforces_foreign_keys(tmp_path: Path) -> None:
    engine = create_engine(_url(tmp_path / "qt.sqlite3"))
    try:
        async with engine.connect() as conn:
            pragma = await conn.exec_driver_sql("PRAGMA journal_mode")
            assert pragma.scalar_one() == "wal"
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar_one() == 1
            assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar_one() == 1  # NORMAL
            assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar_one() > 0
    finally:
        await engine.dispose()
    await upgrade(_url(tmp_path / "qt.sqlite3"))
    engine = create_engine(_url(tmp_path / "qt.sqlite3"))
    try:
        with pytest.raises(IntegrityError, match="FOREIGN KEY"):
            async with engine.begin() as conn:
                await conn.exec_driver_sql(
                    "INSERT INTO fills (fill_id, client_order_id, exchange_order_id, symbol, side,"
                    " amount, price, fee, liquidity, ts_ms, market_type) VALUES"
                    " ('f', 'ghost', 'x', 'S', 'buy', '1', '1', '0', 'maker', 0, 'spot')"
                )
    finally:
        await engine.dispose()


def _schema_diff(conn: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(conn), SQLModel.metadata))


def _inspected_columns(conn: Connection) -> dict[str, set[str]]:
    insp = inspect(conn)
    return {t: {c["name"] for c in insp.get_columns(t)} for t in insp.get_table_names()}


async def test_migrated_schema_matches_the_sqlmodel_tables(tmp_path: Path) -> None:
    url = _url(tmp_path / "qt.sqlite3")
    await upgrade(url)
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            columns = await conn.run_sync(_inspected_columns)
            diff = await conn.run_sync(_schema_diff)
    finally:
        await engine.dispose()
    expected = {t.name: {c.name for c in t.columns} for t in SQLModel.metadata.sorted_tables}
    assert set(expected) == EXPECTED_TABLES
    columns.pop("alembic_version")
    assert columns == expected
    # Alembic's own comparison also checks types, nullability, indexes and constraints.
    assert diff == []


async def test_candles_table_is_without_rowid(tmp_path: Path) -> None:
    db = tmp_path / "qt.sqlite3"
    await upgrade(_url(db))
    with sqlite3.connect(db) as conn:
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'candles'").fetchone()
    assert "WITHOUT ROWID" in sql.upper()


def _other_process_migrating(db: Path, template: Path) -> sqlite3.Connection:
    """Return a connection to ``db`` that holds the write lock with the whole schema created
    and not yet committed: another process in the middle of its first-start migration."""
    with sqlite3.connect(template) as source:
        ddl = [r[0] for r in source.execute("SELECT sql FROM sqlite_master WHERE sql NOT NULL")]
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("PRAGMA journal_mode=WAL")
    other.execute("BEGIN IMMEDIATE")
    for statement in ddl:
        other.execute(statement)
    other.execute("INSERT INTO alembic_version VALUES (?)", (head_revision(),))
    return other


async def test_first_start_waits_for_a_migration_in_progress_then_finds_it_done(
    tmp_path: Path,
) -> None:
    # Two processes start on a new database: the other one commits its schema at the worst
    # moment for us, just before our first write. A migration that read the (empty) schema
    # before taking the write lock then died with "database is locked"; it must hold the lock
    # before it reads, so it sees the other's schema and has nothing left to do.
    template, db = tmp_path / "template.sqlite3", tmp_path / "qt.sqlite3"
    await upgrade(_url(template))
    other = _other_process_migrating(db, template)
    engine = create_engine(_url(db))
    writes: list[str] = []

    def commit_before_our_first_write(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        if statement.lstrip().upper().startswith(("BEGIN IMMEDIATE", "CREATE", "INSERT")):
            writes.append(statement)
            if other.in_transaction:
                other.execute("COMMIT")

    event.listen(engine.sync_engine, "before_cursor_execute", commit_before_our_first_write)
    try:
        await upgrade_engine(engine)
    finally:
        await engine.dispose()
        other.close()
    assert [w.split()[0].upper() for w in writes] == ["BEGIN"]  # found current: wrote nothing
    assert current_revision(_url(db)) == head_revision()


async def test_migrations_started_at_once_on_a_new_database_all_succeed(tmp_path: Path) -> None:
    url = _url(tmp_path / "qt.sqlite3")
    await asyncio.gather(*(upgrade(url) for _ in range(4)))
    assert current_revision(url) == head_revision()


async def test_candles_stored_before_the_market_key_become_spot(tmp_path: Path) -> None:
    db = tmp_path / "qt.sqlite3"
    await upgrade(_url(db), "0001")
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO candles (exchange, symbol, timeframe, ts_ms, open, high, low, close,"
            " volume) VALUES ('binance', 'BTC/USDT', '1h', 1704067200000, 1, 2, 0.5, 1.5, 9)"
        )
    await upgrade(_url(db))
    storage = SqlStorage(_url(db))
    await storage.start()
    try:
        spot = await storage.candles.load("binance", "BTC/USDT", "1h")
        perp = await storage.candles.for_market(CandleMarket.PERP).load("binance", "BTC/USDT", "1h")
        listed = await storage.candles.list_series()
    finally:
        await storage.stop()
    assert (spot.ts_ms.tolist(), spot.close.tolist(), spot.volume.tolist()) == (
        [1704067200000],
        [1.5],
        [9.0],
    )
    assert len(perp) == 0
    assert [(s.market, s.rows) for s in listed] == [(CandleMarket.SPOT, 1)]


async def test_downgrade_keeps_the_spot_candles(tmp_path: Path) -> None:
    db = tmp_path / "qt.sqlite3"
    await upgrade(_url(db))
    with sqlite3.connect(db) as conn:
        for market, close in (("spot", 1.5), ("perp", 1.6)):
            conn.execute(
                "INSERT INTO candles (exchange, market, symbol, timeframe, ts_ms, open, high, low,"
                " close, volume) VALUES ('binance', ?, 'BTC/USDT', '1h', 1704067200000, 1, 2,"
                " 0.5, ?, 9)",
                (market, close),
            )
    command.downgrade(alembic_config(_url(db)), "0001")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT symbol, close FROM candles").fetchall() == [("BTC/USDT", 1.5)]


_OLD_VERSION_SQL = (
    "INSERT INTO model_versions (id, member, status, train_start_ms, train_end_ms,"
    " feature_set_hash, metrics, artifact_path, artifact_sha256, created_ms) VALUES"
    " (?, ?, ?, 1, 2, 'fs', '{\"auc\": 0.5}', 'models/xgb/v', ?, ?)"
)


async def test_versions_saved_before_0005_keep_their_data_and_get_the_defaults(
    tmp_path: Path,
) -> None:
    db = tmp_path / "qt.sqlite3"
    await upgrade(_url(db), "0004")
    with sqlite3.connect(db) as conn:
        conn.execute(_OLD_VERSION_SQL, ("v1", "xgb", "CANDIDATE", "ab" * 32, 10))
    await upgrade(_url(db))
    storage = SqlStorage(_url(db))
    await storage.start()
    try:
        got = await storage.model_versions.get("v1")
        await storage.predictions.add_many([])  # the new table is there
    finally:
        await storage.stop()
    assert got is not None
    assert (got.member, got.status, got.metrics, got.artifact_sha256, got.created_ms) == (
        "xgb",
        ModelStatus.CANDIDATE,
        {"auc": 0.5},
        "ab" * 32,
        10,
    )
    assert (got.symbols, got.params, got.libraries, got.reason) == ((), {}, {}, "")
    assert (got.promoted_ms, got.status_ms) == (None, None)


async def test_0005_keeps_the_newest_of_several_champions_and_retires_the_others(
    tmp_path: Path,
) -> None:
    db = tmp_path / "qt.sqlite3"
    await upgrade(_url(db), "0004")
    with sqlite3.connect(db) as conn:  # only by hand: nothing promoted before 0005
        for vid, member, created in (("a", "xgb", 10), ("c", "xgb", 30), ("b", "xgb", 30)):
            conn.execute(_OLD_VERSION_SQL, (vid, member, "CHAMPION", "ab" * 32, created))
        conn.execute(_OLD_VERSION_SQL, ("l", "lgbm", "CHAMPION", "cd" * 32, 5))
    await upgrade(_url(db))
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, status, reason FROM model_versions ORDER BY id").fetchall()
    retired = "retired by migration 0005: one champion per member"
    assert rows == [
        ("a", "RETIRED", retired),
        ("b", "RETIRED", retired),
        ("c", "CHAMPION", ""),
        ("l", "CHAMPION", ""),
    ]


async def test_downgrade_from_0005_keeps_the_versions(tmp_path: Path) -> None:
    db = tmp_path / "qt.sqlite3"
    await upgrade(_url(db))
    with sqlite3.connect(db) as conn:
        conn.execute(_OLD_VERSION_SQL, ("v1", "xgb", "CHAMPION", "ab" * 32, 10))
    command.downgrade(alembic_config(_url(db)), "0004")
    assert current_revision(_url(db)) == "0004"
    columns = _columns_by_table(db)
    assert "model_predictions" not in columns
    assert "reason" not in columns["model_versions"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT id, status FROM model_versions").fetchall() == [
            ("v1", "CHAMPION")
        ]
