"""in-app inbox: messages, their change log, per-tenant token secrets and origins

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # One row per in-app notification: what the user's inbox shows and its read state.
    op.create_table(
        "inbox_messages",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("tenant", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("notification_id", sa.UUID(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("action_url", sa.Text(), nullable=True),
        sa.Column("category", sa.Text(), nullable=True),
        sa.Column("test", sa.Boolean(), server_default="false", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["tenant"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        # A retried provider step stores the message once.
        sa.UniqueConstraint("notification_id", name="uq_inbox_messages_notification"),
    )
    # The feed: newest first, keyset-paginated.
    op.create_index(
        "ix_inbox_messages_feed",
        "inbox_messages",
        ["tenant", "user_id", sa.text("created_at DESC"), "id"],
    )
    # Every change to a message, in order: what the stream sends and replays.
    op.create_table(
        "inbox_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("tenant", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("message_id", sa.UUID(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["tenant"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_inbox_events_user", "inbox_events", ["tenant", "user_id", "id"])
    # The key user tokens are signed with; replacing it revokes every token issued.
    op.create_table(
        "tenant_inbox_secrets",
        sa.Column("tenant", sa.UUID(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column(
            "rotated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["tenant"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tenant"),
    )
    # Browser origins allowed to call the inbox routes (CORS), per tenant.
    op.create_table(
        "tenant_inbox_origins",
        sa.Column("tenant", sa.UUID(), nullable=False),
        sa.Column("origin", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["tenant"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("tenant", "origin"),
    )


def downgrade() -> None:
    op.drop_table("tenant_inbox_origins")
    op.drop_table("tenant_inbox_secrets")
    op.drop_index("ix_inbox_events_user", table_name="inbox_events")
    op.drop_table("inbox_events")
    op.drop_index("ix_inbox_messages_feed", table_name="inbox_messages")
    op.drop_table("inbox_messages")
