"""flows: versioned definitions, one run per recipient, throttle counts

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 01:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _now() -> sa.Column:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "flows",
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("steps", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        _now(),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tenant_id", "key", "version"),
    )
    op.create_table(
        "flow_runs",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("test", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("flow_key", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("trigger_id", sa.UUID(), nullable=False),
        sa.Column("cancellation_key", sa.String(length=256), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "steps",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="[]",
            nullable=False,
        ),
        _now(),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_flow_runs_tenant_created", "flow_runs", ["tenant_id", "created_at", "id"])
    op.create_index(
        "ix_flow_runs_tenant_flow", "flow_runs", ["tenant_id", "flow_key", "created_at"]
    )
    op.create_index("ix_flow_runs_tenant_user", "flow_runs", ["tenant_id", "user_id", "created_at"])
    op.create_index(
        "ix_flow_runs_tenant_status", "flow_runs", ["tenant_id", "status", "created_at"]
    )
    op.create_index("ix_flow_runs_trigger", "flow_runs", ["tenant_id", "trigger_id"])
    op.create_index(
        "ix_flow_runs_cancellation",
        "flow_runs",
        ["tenant_id", "cancellation_key"],
        postgresql_where=sa.text("cancellation_key IS NOT NULL AND status = 'running'"),
    )
    op.create_table(
        "flow_throttle_hits",
        sa.Column("run_id", sa.UUID(), nullable=False),
        sa.Column("step_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("flow_key", sa.String(length=128), nullable=False),
        sa.Column("key", sa.String(length=256), nullable=False),
        sa.Column("admitted", sa.Boolean(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "step_id"),
    )
    op.create_index(
        "ix_flow_throttle_window",
        "flow_throttle_hits",
        ["tenant_id", "user_id", "flow_key", "key", "at"],
    )


def downgrade() -> None:
    op.drop_index("ix_flow_throttle_window", table_name="flow_throttle_hits")
    op.drop_table("flow_throttle_hits")
    for index in (
        "ix_flow_runs_cancellation",
        "ix_flow_runs_trigger",
        "ix_flow_runs_tenant_status",
        "ix_flow_runs_tenant_user",
        "ix_flow_runs_tenant_flow",
        "ix_flow_runs_tenant_created",
    ):
        op.drop_index(index, table_name="flow_runs")
    op.drop_table("flow_runs")
    op.drop_table("flows")
