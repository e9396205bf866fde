"""the fallback leg a notification's status is on

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 16:15:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        'notifications',
        sa.Column('leg', sa.Integer(), server_default='0', nullable=False),
    )


def downgrade() -> None:
    op.drop_column('notifications', 'leg')
