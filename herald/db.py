"""PostgreSQL tables (SQLAlchemy 2) and the one engine a process keeps."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    event,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from herald.settings import Settings


class Base(DeclarativeBase):
    """Declarative base; Alembic reads ``Base.metadata``."""

    type_annotation_map = {dict[str, Any]: JSONB, uuid.UUID: UUID(as_uuid=True)}


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Tenant(Base):
    """A customer of Herald; everything else belongs to one."""

    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = _now()
    # Requests per minute per API key; NULL means the deployment's default.
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)


# What an API key may do (``api/deps.py`` maps every route to one); a new key has all.
API_KEY_SCOPES = ("send", "read", "manage", "admin")


class ApiKey(Base):
    """An API key, stored as its SHA-256; the key itself is shown once at creation."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = _now()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # "live", or "test": a test key's notifications never reach a provider.
    kind: Mapped[str] = mapped_column(String(8), default="live", server_default="live")
    # When the key last authenticated a request, to within a minute (see herald/tenants.py).
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    scopes: Mapped[list[str]] = mapped_column(
        ARRAY(String(16)), server_default="{" + ",".join(API_KEY_SCOPES) + "}"
    )


class User(Base):
    """A recipient, keyed by the client's own id within the tenant."""

    __tablename__ = "users"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(16))
    # ``{"slack": "<channel id>"}``, ``{"teams": "<webhook url>"}`` or ``{"discord": …}``.
    chat: Mapped[dict[str, str] | None] = mapped_column(JSONB)
    locale: Mapped[str | None] = mapped_column(String(35))
    timezone: Mapped[str | None] = mapped_column(String(64))
    preferences: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    # ``{"start": "22:00", "end": "08:00"}`` in ``timezone``; NULL: none.
    quiet_hours: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class Device(Base):
    """A push token registered for a user."""

    __tablename__ = "devices"
    __table_args__ = (
        UniqueConstraint("tenant_id", "user_id", "token"),
        ForeignKeyConstraint(
            ["tenant_id", "user_id"], ["users.tenant_id", "users.id"], ondelete="CASCADE"
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[uuid.UUID]
    user_id: Mapped[str] = mapped_column(String(128))
    token: Mapped[str] = mapped_column(String(4096))
    platform: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = _now()


class Template(Base):
    """One version of a template for one channel and locale; versions are never changed."""

    __tablename__ = "templates"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    channel: Mapped[str] = mapped_column(String(8), primary_key=True)
    locale: Mapped[str] = mapped_column(String(35), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    # What kind of message it is; users may opt out of any but ``transactional``.
    category: Mapped[str] = mapped_column(String(64), server_default="transactional")


class Notification(Base):
    """The current state of one notification; its history is in ``notification_events``."""

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        Index("ix_notifications_tenant_created", "tenant_id", "created_at", "id"),
        Index("ix_notifications_tenant_status", "tenant_id", "status", "created_at"),
        Index("ix_notifications_tenant_user", "tenant_id", "user_id", "created_at"),
        # A broadcast's progress counts and its recipients' listing; partial, so a
        # notification asked for on its own costs these indexes nothing.
        Index(
            "ix_notifications_broadcast_status",
            "broadcast_id",
            "status",
            postgresql_where=text("broadcast_id IS NOT NULL"),
        ),
        Index(
            "ix_notifications_broadcast_created",
            "broadcast_id",
            "created_at",
            "id",
            postgresql_where=text("broadcast_id IS NOT NULL"),
        ),
        # The console's overview (migration 0012): outcomes by when the status last
        # moved, read from the index alone; and the failed few, for the top reasons.
        Index(
            "ix_notifications_tenant_updated",
            "tenant_id",
            "updated_at",
            postgresql_include=["channel", "status", "test", "created_at", "send_at", "id"],
        ),
        Index(
            "ix_notifications_tenant_failed",
            "tenant_id",
            "updated_at",
            postgresql_where=text("status IN ('failed', 'undelivered')"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(8))
    user_id: Mapped[str] = mapped_column(String(128))
    template: Mapped[str] = mapped_column(String(128))
    template_version: Mapped[int | None] = mapped_column(Integer)
    locale: Mapped[str | None] = mapped_column(String(35))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    send_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16))
    cycle: Mapped[int] = mapped_column(Integer, default=1)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    provider: Mapped[str | None] = mapped_column(String(64))
    provider_message_id: Mapped[str | None] = mapped_column(String(256))
    last_error: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(256))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    # Channels to try after ``channel``, in order (kept so a resend falls back the same way).
    fallback: Mapped[list[str] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The digest this request became part of (``digests.id``); NULL for other notifications.
    digest_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    # Made with a test key: goes through the lifecycle, never reaches a provider.
    test: Mapped[bool] = mapped_column(default=False, server_default="false")
    # Which channel of the fallback order the status is on (0: the one requested): a
    # later channel tried after an earlier one was sent but never confirmed moves it on.
    leg: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Kept so a resend waits for a receipt the same way.
    confirm_within_seconds: Mapped[float | None] = mapped_column(Float)
    # The strongest delivery receipt of ``receipt_cycle`` (herald/statuslog/): kept on
    # the row so a receipt that arrives before ``sent`` is recorded still decides the
    # status once it is.
    receipt_cycle: Mapped[int | None] = mapped_column(Integer)
    receipt_status: Mapped[str | None] = mapped_column(String(16))
    receipt_error: Mapped[str | None] = mapped_column(Text)
    receipt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The broadcast this notification is one recipient of (None: asked for on its own).
    broadcast_id: Mapped[uuid.UUID | None] = mapped_column(default=None)


class NotificationEvent(Base):
    """One row per status transition; never updated or deleted."""

    __tablename__ = "notification_events"
    __table_args__ = (
        UniqueConstraint("notification_id", "event_key"),
        Index("ix_notification_events_order", "notification_id", "at", "id"),
        # ``sent`` events by time, for the overview's accept→sent latency (0012).
        Index(
            "ix_notification_events_sent",
            "at",
            postgresql_include=["notification_id", "cycle"],
            postgresql_where=text("status = 'sent'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    notification_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE")
    )
    event_key: Mapped[str] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16))
    cycle: Mapped[int] = mapped_column(Integer, default=1)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    provider: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Digest(Base):
    """One digest window: the requests it collected and the notification it became."""

    __tablename__ = "digests"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    # The digest workflow (one per tenant, user, channel, template and key).
    workflow_id: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[str] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(8))
    template: Mapped[str] = mapped_column(String(128))
    key: Mapped[str] = mapped_column(String(128))
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closes_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    item_count: Mapped[int] = mapped_column(Integer, default=0)
    # The notification it was sent as, once closed.
    notification_id: Mapped[uuid.UUID | None]


class ProviderMessage(Base):
    """A provider's message id and the notification send cycle it belongs to.

    Providers that report receipts by their own message id (Twilio) can report before
    Herald has recorded ``sent``: the receipt then waits here, and the ``sent`` write
    that names this id applies it (both meet on this row's key; see statuslog).
    """

    __tablename__ = "provider_messages"

    provider_message_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    notification_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE")
    )
    cycle: Mapped[int | None] = mapped_column(Integer)
    receipt_status: Mapped[str | None] = mapped_column(String(16))
    receipt_report: Mapped[str | None] = mapped_column(String(64))
    receipt_error: Mapped[str | None] = mapped_column(Text)
    receipt_detail: Mapped[str | None] = mapped_column(Text)
    receipt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()


class WebhookEndpoint(Base):
    """A tenant's URL that receives status events, signed with its own secret."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_tenant", "tenant_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    # Status names, or "*" for all of them.
    events: Mapped[list[str]] = mapped_column(ARRAY(String(32)))
    # The Standard Webhooks signing secret ("whsec_..."); shown once, never logged.
    secret: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    # Set when the endpoint answered 410 Gone: nothing more is sent to it.
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled_reason: Mapped[str | None] = mapped_column(Text)


class WebhookMessage(Base):
    """The outbox: one row per (status event, endpoint), written in the same statement as
    the event, so an event is never lost between the log and its webhooks."""

    __tablename__ = "webhook_messages"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id"),
        # The dispatcher takes the due messages of each endpoint in turn.
        Index(
            "ix_webhook_messages_due",
            "endpoint_id",
            "next_attempt_at",
            postgresql_where=text("state = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    event_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("notification_events.id", ondelete="CASCADE")
    )
    # pending → delivered | failed (retries ran out) | dropped (the endpoint was disabled)
    state: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)


class WebhookAttempt(Base):
    """One POST of a webhook message to its endpoint, for ``GET /v1/webhooks/{id}/deliveries``."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_endpoint", "endpoint_id", "at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("webhook_messages.id", ondelete="CASCADE")
    )
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Topic(Base):
    """A named audience of a tenant's users, for broadcasts."""

    __tablename__ = "topics"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class TopicSubscriber(Base):
    """One user subscribed to one topic. The primary key (tenant, topic, user id) is the
    index a broadcast's keyset scan walks, page after page, in user id order."""

    __tablename__ = "topic_subscribers"
    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "topic_key"], ["topics.tenant_id", "topics.key"], ondelete="CASCADE"
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    topic_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    # Not a foreign key to users: a subscriber unknown when the broadcast reaches them
    # is ``suppressed`` like any other notification to an unknown user.
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    created_at: Mapped[datetime] = _now()


class Broadcast(Base):
    """One message to an audience; each recipient gets an ordinary notification whose
    ``broadcast_id`` points here, and the progress counts come from those."""

    __tablename__ = "broadcasts"
    __table_args__ = (Index("ix_broadcasts_tenant_created", "tenant_id", "created_at", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(8))
    template: Mapped[str] = mapped_column(String(128))
    locale: Mapped[str | None] = mapped_column(String(35))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    fallback: Mapped[list[str] | None] = mapped_column(JSONB)
    # {"topic": key} | {"user_ids": [...]} | {"all_users": true}
    audience: Mapped[dict[str, Any]] = mapped_column()
    send_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rate_per_second: Mapped[float] = mapped_column(Float)
    # running → completed | cancelled, written by the broadcast workflow when it ends.
    status: Mapped[str] = mapped_column(String(16))
    # The audience's size when created; the number reached once completed.
    total: Mapped[int] = mapped_column(Integer)
    request_hash: Mapped[str | None] = mapped_column(String(64))
    # Made with a test key: its notifications are test notifications, and only test
    # keys see it.
    test: Mapped[bool] = mapped_column(default=False, server_default="false")
    cancel_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Producer(Base):
    """A RabbitMQ user allowed to publish notification requests, and the tenant its
    messages belong to (the broker-validated ``user_id`` of a message names the user)."""

    __tablename__ = "producers"

    # AMQP's user_id is a short string: at most 255 bytes.
    amqp_user: Mapped[str] = mapped_column(String(255), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    # A test producer's notifications never reach a provider, as a test key's.
    test: Mapped[bool] = mapped_column(default=False, server_default="false")
    created_at: Mapped[datetime] = _now()


class Flow(Base):
    """One version of a flow: its steps as data. Versions are never changed; a run keeps
    the version it started with."""

    __tablename__ = "flows"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(String(64))
    steps: Mapped[list[Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _now()


class FlowRun(Base):
    """One recipient's run of one flow version (a ``FlowRun`` workflow); ``steps`` holds
    each reached step's status and outcome, written by the run as it goes."""

    __tablename__ = "flow_runs"
    __table_args__ = (
        Index("ix_flow_runs_tenant_created", "tenant_id", "created_at", "id"),
        Index("ix_flow_runs_tenant_flow", "tenant_id", "flow_key", "created_at"),
        Index("ix_flow_runs_tenant_user", "tenant_id", "user_id", "created_at"),
        Index("ix_flow_runs_tenant_status", "tenant_id", "status", "created_at"),
        Index("ix_flow_runs_trigger", "tenant_id", "trigger_id"),
        Index(
            "ix_flow_runs_cancellation",
            "tenant_id",
            "cancellation_key",
            postgresql_where=text("cancellation_key IS NOT NULL AND status = 'running'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    # Started with a test key: its sends never reach a provider, only test keys see it.
    test: Mapped[bool] = mapped_column(default=False, server_default="false")
    flow_key: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[str] = mapped_column(String(128))
    trigger_id: Mapped[uuid.UUID]
    cancellation_key: Mapped[str | None] = mapped_column(String(256))
    # running → completed | cancelled | failed
    status: Mapped[str] = mapped_column(String(16))
    steps: Mapped[list[Any]] = mapped_column(JSONB, server_default="[]")
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class FlowThrottleHit(Base):
    """A run that reached a throttle step, and whether it was let through; the admitted
    ones of a window are what the next run counts against the limit."""

    __tablename__ = "flow_throttle_hits"
    __table_args__ = (
        Index("ix_flow_throttle_window", "tenant_id", "user_id", "flow_key", "key", "at"),
    )

    run_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    step_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(128))
    flow_key: Mapped[str] = mapped_column(String(128))
    key: Mapped[str] = mapped_column(String(256))
    admitted: Mapped[bool]
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Integration(Base):
    """A tenant's account at a provider (``/v1/integrations``): its sends of the channel
    go through its enabled integrations in ``priority`` order (lowest first). ``config``
    holds credentials and is only ever stored sealed (``herald/secretbox.py``)."""

    __tablename__ = "integrations"
    __table_args__ = (Index("ix_integrations_channel", "channel", "tenant_id", "priority"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(128))
    priority: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(default=True, server_default="true")
    # Messages per second through this integration, across workers; NULL: no limit.
    rate_per_second: Mapped[float | None] = mapped_column(Float)
    config_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    # The provider's last failure through this integration, for the console.
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IngestQueueReport(Base):
    """What one bridge last reported about one ingest queue (``bridge/queue_health.py``):
    messages it holds unsettled and why, and since when the queue has not drained. Each
    bridge rewrites its rows every ``report_seconds``; a row not rewritten in time belongs
    to a bridge that is gone, and the health page and ``herald doctor`` ignore it."""

    __tablename__ = "ingest_queue_reports"

    bridge: Mapped[str] = mapped_column(String(120), primary_key=True)
    queue: Mapped[str] = mapped_column(String(255), primary_key=True)
    # Messages taken and kept unsettled while a service is retried, or requeued.
    held: Mapped[int] = mapped_column(Integer, default=0)
    oldest_held_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_reason: Mapped[str | None] = mapped_column(Text)
    last_reason_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Messages ready at the last sample, and since when none has been settled while some
    # were ready (None: the queue was empty or drained).
    ready: Mapped[int | None] = mapped_column(Integer)
    stalled_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    report_seconds: Mapped[float] = mapped_column(Float)
    reported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# A pooled connection idle for longer than this is checked before it is used again.
_PING_AFTER_IDLE_SECONDS = 1.0


def make_engine(
    settings: Settings, pool_size: int | None = None, *, pre_ping: bool = True
) -> AsyncEngine:
    """The process's one connection pool.

    ``pre_ping`` checks a connection that sat idle in the pool before handing it out
    (see ``_ping_when_idle``); workers turn it off because their steps retry on a
    dropped connection anyway.
    """
    engine = create_async_engine(
        settings.database_url,
        pool_size=pool_size or settings.database_pool_size,
        max_overflow=pool_size or settings.database_pool_size,
    )
    if pre_ping:
        _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Check a pooled connection before use if it has been idle for over a second.

    A PostgreSQL restart (or an idle-session timeout) kills idle connections; checking
    them first means the next request gets a fresh one instead of an error. A connection
    in steady use is not checked: SQLAlchemy's own pre-ping costs three round trips
    (BEGIN, a no-op statement, ROLLBACK) on every checkout.
    """
    pool = engine.sync_engine.pool

    @event.listens_for(pool, "checkin")
    def _note_idle(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _check_if_idle(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        idle_since = record.info.get("idle_since")  # absent: connected just now
        if idle_since is None or time.monotonic() - idle_since < _PING_AFTER_IDLE_SECONDS:
            return
        try:
            dbapi_connection.ping()
        except Exception as err:
            # The pool discards this connection and hands out a fresh one.
            raise DisconnectionError(f"idle connection is gone: {err}") from err


@asynccontextmanager
async def single_statements(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A pooled connection with no transaction around its statements, for work where each
    statement is whole on its own (a read, a keyed write in one statement): it saves the
    BEGIN and COMMIT round trips on the hot path."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[Any]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


# The console's template filter and the API's ``?template=``, newest first.
Index(
    "ix_notifications_tenant_template",
    Notification.tenant_id,
    Notification.template,
    Notification.created_at,
)
