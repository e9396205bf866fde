"""chat channel: a user's chat address (Slack channel, Teams or Discord webhook)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 04:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # {"slack": "<channel id>"} | {"teams": "<webhook url>"} | {"discord": "<webhook url>"}
    op.add_column("users", sa.Column("chat", postgresql.JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("users", "chat")
