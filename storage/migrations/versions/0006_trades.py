"""Keep the closed round trips, so /trades, /profit and the reports survive a restart.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 09:00:00

Adds ``trades``: one row per closed trade, its exit legs and entry explanation as the trade
codec's JSON. Written by hand; tests/unit/storage/test_migrations.py checks the result against
``storage.tables``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.Text(), nullable=nullable)


def _ms(name: str) -> sa.Column:
    return sa.Column(name, sa.BigInteger(), nullable=False)


def upgrade() -> None:
    """Create ``trades`` and its index on the close time."""
    op.create_table(
        "trades",
        sa.Column("id", sa.Integer(), nullable=False),
        _text("trade_id"),
        _text("symbol"),
        _text("side"),
        _text("market_type"),
        sa.Column("leverage", sa.Integer(), nullable=False),
        _ms("opened_ms"),
        _ms("closed_ms"),
        _text("amount"),
        _text("entry_price"),
        _text("exit_price"),
        _text("fees"),
        _text("pnl"),
        sa.Column("pnl_pct", sa.Float(), nullable=False),
        _text("exit_reason"),
        _text("legs"),
        _text("funding"),
        _text("liquidation_price", nullable=True),
        _text("provider"),
        _text("regime"),
        _text("exit_profile"),
        _text("explanation", nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("trade_id"),
    )
    op.create_index("ix_trades_closed_ms", "trades", ["closed_ms"])


def downgrade() -> None:
    """Drop ``trades``."""
    op.drop_index("ix_trades_closed_ms", "trades")
    op.drop_table("trades")
