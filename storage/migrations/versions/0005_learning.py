"""Give the model registry what the learning manager needs, and keep every prediction.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 09:00:00

``model_versions`` gains the symbols a version was trained on, its hyper-parameters and
library versions (JSON), why it has its status and when it got it, and when it was first
promoted; rows saved before get ``[]``, ``{}``, ``''`` and NULL. A partial unique index keeps
one CHAMPION per member: a database that already holds more (only by hand: nothing promoted
before this revision) keeps the newest and retires the others, saying why.
``model_predictions`` keeps each version's prediction per symbol and candle. Written by hand;
tests/unit/storage/test_migrations.py checks the result against ``storage.tables``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NEW_COLUMNS = ("symbols", "params", "libraries", "reason", "promoted_ms", "status_ms")

# Every CHAMPION but the newest of its member (by created_ms, then id, as ``newest`` reads).
_RETIRE_EXTRA_CHAMPIONS = """
UPDATE model_versions
SET status = 'RETIRED', reason = 'retired by migration 0005: one champion per member'
WHERE status = 'CHAMPION' AND EXISTS (
    SELECT 1 FROM model_versions AS newer
    WHERE newer.member = model_versions.member AND newer.status = 'CHAMPION'
    AND (newer.created_ms > model_versions.created_ms
         OR (newer.created_ms = model_versions.created_ms AND newer.id > model_versions.id))
)
"""


def upgrade() -> None:
    """Add the registry's new columns and its one-champion index; create ``model_predictions``."""
    for name, default in (("symbols", "[]"), ("params", "{}"), ("libraries", "{}"), ("reason", "")):
        op.add_column(
            "model_versions", sa.Column(name, sa.Text(), nullable=False, server_default=default)
        )
    for name in ("promoted_ms", "status_ms"):
        op.add_column("model_versions", sa.Column(name, sa.BigInteger(), nullable=True))
    op.execute(_RETIRE_EXTRA_CHAMPIONS)
    op.create_index(
        "ux_model_versions_one_champion",
        "model_versions",
        ["member"],
        unique=True,
        sqlite_where=sa.text("status = 'CHAMPION'"),
    )
    op.create_table(
        "model_predictions",
        sa.Column("version_id", sa.Text(), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("member", sa.Text(), nullable=False),
        sa.Column("p_up", sa.Float(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("version_id", "symbol", "ts_ms"),
        sa.CheckConstraint("p_up >= 0 AND p_up <= 1", name="ck_model_predictions_p_up"),
        sa.CheckConstraint("role IN ('champion', 'shadow')", name="ck_model_predictions_role"),
    )
    op.create_index(
        "ix_model_predictions_version_ts", "model_predictions", ["version_id", "ts_ms"]
    )


def downgrade() -> None:
    """Drop ``model_predictions``, the one-champion index and the registry's new columns."""
    op.drop_index("ix_model_predictions_version_ts", "model_predictions")
    op.drop_table("model_predictions")
    op.drop_index("ux_model_versions_one_champion", "model_versions")
    with op.batch_alter_table("model_versions") as batch:
        for name in reversed(_NEW_COLUMNS):
            batch.drop_column(name)
