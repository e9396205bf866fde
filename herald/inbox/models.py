"""The in-app inbox's tables (migration 0015).

``tenant`` is the tenant's id (``tenants.id``). ``inbox_events`` is the ordered log of
every change to ``inbox_messages``; it is only written through ``herald.inbox.store``,
which appends the event and calls ``pg_notify('herald_inbox', …)`` in the same
transaction as the change.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from herald.db import Base

NOTIFY_CHANNEL = "herald_inbox"


def _tenant(primary_key: bool = False) -> Mapped[uuid.UUID]:
    return mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=primary_key)


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class InboxMessage(Base):
    """One in-app notification as the user's inbox shows it, with its read state."""

    __tablename__ = "inbox_messages"
    __table_args__ = (
        UniqueConstraint("notification_id", name="uq_inbox_messages_notification"),
        Index("ix_inbox_messages_feed", "tenant", "user_id", text("created_at DESC"), "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant: Mapped[uuid.UUID] = _tenant()
    user_id: Mapped[str] = mapped_column(Text)
    notification_id: Mapped[uuid.UUID]
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    action_url: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(Text)
    # Made with a test key: never shown in a user's feed, stream or counts.
    test: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    created_at: Mapped[datetime] = _now()
    seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class InboxEvent(Base):
    """One change to an inbox message (``message.created`` | ``message.updated``)."""

    __tablename__ = "inbox_events"
    __table_args__ = (Index("ix_inbox_events_user", "tenant", "user_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    tenant: Mapped[uuid.UUID] = _tenant()
    user_id: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(Text)
    message_id: Mapped[uuid.UUID]
    created_at: Mapped[datetime] = _now()


class TenantInboxSecret(Base):
    """The key a tenant's user tokens are signed with; rotating it revokes them all."""

    __tablename__ = "tenant_inbox_secrets"

    tenant: Mapped[uuid.UUID] = _tenant(primary_key=True)
    secret: Mapped[str] = mapped_column(Text)
    rotated_at: Mapped[datetime] = _now()


class TenantInboxOrigin(Base):
    """A browser origin allowed to call the inbox routes (CORS) for a tenant."""

    __tablename__ = "tenant_inbox_origins"

    tenant: Mapped[uuid.UUID] = _tenant(primary_key=True)
    origin: Mapped[str] = mapped_column(Text, primary_key=True)
    created_at: Mapped[datetime] = _now()
