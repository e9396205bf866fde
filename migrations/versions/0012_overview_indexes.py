"""indexes for the console's overview (api/services/overview.py)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 01:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FAILED = sa.text("status IN ('failed', 'undelivered')")
_SENT = sa.text("status = 'sent'")


def upgrade() -> None:
    # A tenant's notifications by when their status last moved, carrying what the
    # outcome counts and the latency join read (``id`` included), so both scan the index
    # alone.
    op.create_index(
        "ix_notifications_tenant_updated",
        "notifications",
        ["tenant_id", "updated_at"],
        unique=False,
        postgresql_include=["channel", "status", "test", "created_at", "send_at", "id"],
    )
    # The failed few, for the top failure reasons without visiting every row of the day.
    op.create_index(
        "ix_notifications_tenant_failed",
        "notifications",
        ["tenant_id", "updated_at"],
        unique=False,
        postgresql_where=_FAILED,
    )
    # The log's ``sent`` events by time, for accept→sent latency.
    op.create_index(
        "ix_notification_events_sent",
        "notification_events",
        ["at"],
        unique=False,
        postgresql_include=["notification_id", "cycle"],
        postgresql_where=_SENT,
    )


def downgrade() -> None:
    op.drop_index("ix_notification_events_sent", table_name="notification_events")
    op.drop_index("ix_notifications_tenant_failed", table_name="notifications")
    op.drop_index("ix_notifications_tenant_updated", table_name="notifications")
