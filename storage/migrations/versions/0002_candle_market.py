"""Key candles by market too (spot, perp, mark): one symbol's series no longer overwrite each other.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 00:00:00

SQLite cannot change a primary key in place, so the table is rebuilt: a new ``candles`` with
``market`` in its key, every existing row copied in as ``spot`` (until now every import and
download was filed under one series per exchange, symbol and timeframe; spot is what the
default settings and ../shared/data hold), then the old table dropped. Written by hand;
tests/unit/storage/test_migrations.py checks the result against ``storage.tables``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PRICES = ("open", "high", "low", "close", "volume")


def _candles(name: str, *, with_market: bool) -> None:
    key = ["exchange", "market", "symbol", "timeframe", "ts_ms"] if with_market else [
        "exchange", "symbol", "timeframe", "ts_ms"
    ]
    op.create_table(
        name,
        *(sa.Column(c, sa.Text(), nullable=False) for c in key[:-1]),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False, autoincrement=False),
        *(sa.Column(c, sa.Float(), nullable=False) for c in _PRICES),
        sa.PrimaryKeyConstraint(*key),
        sqlite_with_rowid=False,
    )


def upgrade() -> None:
    """Rebuild ``candles`` with ``market`` in the key; existing rows become spot."""
    _candles("candles_new", with_market=True)
    prices = ", ".join(_PRICES)
    op.execute(
        f"INSERT INTO candles_new (exchange, market, symbol, timeframe, ts_ms, {prices}) "
        f"SELECT exchange, 'spot', symbol, timeframe, ts_ms, {prices} FROM candles"
    )
    op.drop_table("candles")
    op.rename_table("candles_new", "candles")


def downgrade() -> None:
    """Rebuild ``candles`` without ``market``, keeping the spot rows (the others have no place)."""
    _candles("candles_old", with_market=False)
    prices = ", ".join(_PRICES)
    op.execute(
        f"INSERT INTO candles_old (exchange, symbol, timeframe, ts_ms, {prices}) "
        f"SELECT exchange, symbol, timeframe, ts_ms, {prices} FROM candles WHERE market = 'spot'"
    )
    op.drop_table("candles")
    op.rename_table("candles_old", "candles")
