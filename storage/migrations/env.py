"""Alembic environment: migrate the connection ``storage.migrate`` hands over.

``storage.migrate`` opens the async engine (same PRAGMAs as the application), starts a
transaction and calls Alembic through ``AsyncConnection.run_sync`` with the sync connection in
``config.attributes["connection"]``; SQLite DDL is transactional, so a failed upgrade leaves the
schema as it was. Without a connection (a developer running Alembic by hand) the
``sqlalchemy.url`` main option is used with a blocking engine.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine
from sqlmodel import SQLModel

import storage.tables  # noqa: F401 - registers the tables on SQLModel.metadata

config = context.config
target_metadata = SQLModel.metadata


def _run(connection: Connection) -> None:
    # Batch mode lets later revisions alter SQLite tables (copy-and-move).
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def _run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


_connection = config.attributes.get("connection")
if context.is_offline_mode():
    _run_offline()
elif _connection is not None:
    _run(_connection)
else:
    _engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite://")
    with _engine.begin() as _conn:
        _run(_conn)
    _engine.dispose()
