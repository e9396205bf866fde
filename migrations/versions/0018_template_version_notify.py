"""templates: notify every new version (herald_template_versions)

The API remembers each template's latest versions while it listens on this channel, so
a submission checks its data without asking PostgreSQL, and a new version still counts
at once, whichever process or tool wrote it.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05 11:20:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION herald_template_version_notify() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            changed templates;
        BEGIN
            IF TG_OP = 'DELETE' THEN changed := OLD; ELSE changed := NEW; END IF;
            PERFORM pg_notify(
                'herald_template_versions',
                changed.tenant_id::text || ':' || changed.channel || ':' || changed.key
            );
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER templates_version_notify
        AFTER INSERT OR UPDATE OR DELETE ON templates
        FOR EACH ROW EXECUTE FUNCTION herald_template_version_notify()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER templates_version_notify ON templates")
    op.execute("DROP FUNCTION herald_template_version_notify()")
