"""api key scopes

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 22:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Keys made before scopes existed could do everything: they keep every scope.
    op.add_column(
        'api_keys',
        sa.Column(
            'scopes',
            postgresql.ARRAY(sa.String(length=16)),
            server_default='{send,read,manage,admin}',
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column('api_keys', 'scopes')
