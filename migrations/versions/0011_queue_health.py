"""what each bridge reports about the ingest queues (held messages, stalls)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 01:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ingest_queue_reports",
        sa.Column("bridge", sa.String(length=120), nullable=False),
        sa.Column("queue", sa.String(length=255), nullable=False),
        sa.Column("held", sa.Integer(), nullable=False),
        sa.Column("oldest_held_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_reason", sa.Text(), nullable=True),
        sa.Column("last_reason_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ready", sa.Integer(), nullable=True),
        sa.Column("stalled_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("report_seconds", sa.Float(), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("bridge", "queue"),
    )


def downgrade() -> None:
    op.drop_table("ingest_queue_reports")
