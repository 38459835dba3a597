"""Persistence: SQLModel tables, repositories, the in-memory twin, Alembic migrations.

``open_storage(url)`` is the one entry point the composition root needs: ``"memory://"`` gives
the in-memory twin, any ``sqlite+aiosqlite://`` URL the SQL storage. Call ``await start()``
before use (it migrates the schema) and ``await stop()`` at shutdown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.ports import Storage

MEMORY_URL = "memory://"


def open_storage(url: str) -> Storage:
    """Return the storage for ``url`` (not started yet)."""
    # Imported here so that using the memory twin does not load SQLAlchemy and Alembic.
    if url == MEMORY_URL:
        from storage.memory import MemoryStorage

        return MemoryStorage()
    from storage.repositories import SqlStorage

    return SqlStorage(url)
