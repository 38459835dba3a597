"""Keep the brains' decisions (the CEO's, the Strategy Brain's reviews) as history.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 18:00:00

Risk assessments and policy versions have their own tables since 0001; this adds
``brain_decisions``. Written by hand; tests/unit/storage/test_migrations.py checks the result
against ``storage.tables``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``brain_decisions``."""
    op.create_table(
        "brain_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("brain", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_brain_decisions_ts_ms", "brain_decisions", ["ts_ms"])
    op.create_index("ix_brain_decisions_brain", "brain_decisions", ["brain"])


def downgrade() -> None:
    """Drop ``brain_decisions``."""
    op.drop_index("ix_brain_decisions_brain", "brain_decisions")
    op.drop_index("ix_brain_decisions_ts_ms", "brain_decisions")
    op.drop_table("brain_decisions")
