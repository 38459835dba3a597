"""Persistence: SQLModel tables, repositories, the in-memory twin, Alembic migrations.

``open_storage(url)`` is the one entry point the composition root needs: ``"memory://"`` gives
the in-memory twin, any ``sqlite+aiosqlite://`` URL the SQL storage. Call ``await start()``
before use (it migrates the schema) and ``await stop()`` at shutdown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.domain.enums import CandleMarket

if TYPE_CHECKING:
    from core.ports import Storage

MEMORY_URL = "memory://"


def open_storage(url: str, *, candle_market: CandleMarket = CandleMarket.SPOT) -> Storage:
    """Return the storage for ``url`` (not started yet); its ``candles`` are the series of
    ``candle_market`` (a process passes the market it trades, see ``CandleMarket.traded``)."""
    # Imported here so that using the memory twin does not load SQLAlchemy and Alembic.
    if url == MEMORY_URL:
        from storage.memory import MemoryStorage

        return MemoryStorage(candle_market)
    from storage.repositories import SqlStorage

    return SqlStorage(url, candle_market)
