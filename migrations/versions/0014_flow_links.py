"""flows: which run a send step's notification belongs to; a digest step's members

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 02:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A receipt names a notification; this says which run (if any) waits on it.
    op.create_table(
        "flow_step_notifications",
        sa.Column("notification_id", sa.UUID(), nullable=False),
        sa.Column("run_id", sa.UUID(), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("notification_id"),
    )
    # The triggers a digest step gathered into the run that carries them; their data
    # stays here, never in Temporal.
    op.create_table(
        "flow_digest_items",
        sa.Column("carrier_id", sa.UUID(), nullable=False),
        sa.Column("run_id", sa.UUID(), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        # Recipient, flow, step and key (and test mode): the runs that may share a window.
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        # On the carrier's own row: no run joins the window any more.
        sa.Column("closed", sa.Boolean(), server_default="false", nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("carrier_id", "run_id"),
    )
    # A join looks for the open window of its scope: the carriers' rows only.
    op.create_index(
        "ix_flow_digest_open",
        "flow_digest_items",
        ["tenant_id", "scope", "at"],
        postgresql_where=sa.text("carrier_id = run_id AND NOT closed"),
    )
    # Which window a run is in (a retried join answers the same).
    op.create_index("ix_flow_digest_run", "flow_digest_items", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_flow_digest_run", table_name="flow_digest_items")
    op.drop_index("ix_flow_digest_open", table_name="flow_digest_items")
    op.drop_table("flow_digest_items")
    op.drop_table("flow_step_notifications")
