"""Keep each venue's market rules per symbol (tick, step, minimums, leverage cap).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 12:00:00

``qt data download`` and ``qt run`` store the venue's rules here, so backtests and the demo
size and round each symbol by its own grid. Written by hand;
tests/unit/storage/test_migrations.py checks the result against ``storage.tables``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``market_rules``."""
    op.create_table(
        "market_rules",
        *(
            sa.Column(c, sa.Text(), nullable=False)
            for c in (
                "exchange",
                "market",
                "symbol",
                "amount_step",
                "price_tick",
                "min_amount",
                "min_notional",
            )
        ),
        sa.Column("max_leverage", sa.Integer(), nullable=True),
        sa.Column("fetched_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("exchange", "market", "symbol"),
    )


def downgrade() -> None:
    """Drop ``market_rules``."""
    op.drop_table("market_rules")
