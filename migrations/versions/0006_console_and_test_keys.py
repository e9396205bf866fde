"""API key kinds and last use, test notifications, the template filter index

Revision ID: 0006
Revises: 0002
Create Date: 2026-12-01 14:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        'api_keys', sa.Column('kind', sa.String(length=8), server_default='live', nullable=False)
    )
    op.add_column('api_keys', sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        'notifications', sa.Column('test', sa.Boolean(), server_default='false', nullable=False)
    )
    op.create_index(
        'ix_notifications_tenant_template',
        'notifications',
        ['tenant_id', 'template', 'created_at'],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index('ix_notifications_tenant_template', table_name='notifications')
    op.drop_column('notifications', 'test')
    op.drop_column('api_keys', 'last_used_at')
    op.drop_column('api_keys', 'kind')
