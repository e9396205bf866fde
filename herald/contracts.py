"""Pydantic models that cross process boundaries: REST bodies, AMQP messages,
workflow and activity inputs and outputs.

Every field added later gets a default, so running workflows keep decoding.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# ``\A``/``\Z``, not ``^``/``$``: ``$`` also matches before a trailing newline, so
# ``"+15550100123\n"`` would pass ``E164.match``. (The ``pattern=`` fields below are checked
# by pydantic's Rust regex engine, whose ``$`` is the end of the text.)
E164 = re.compile(r"\A\+[1-9]\d{6,14}\Z")


class Channel(StrEnum):
    """The ways Herald can reach a user."""

    email = "email"
    sms = "sms"
    push = "push"


class Status(StrEnum):
    """Where a notification is in its lifecycle (the README's "Status lifecycle")."""

    accepted = "accepted"
    scheduled = "scheduled"
    sending = "sending"
    retrying = "retrying"
    sent = "sent"
    delivered = "delivered"
    failed = "failed"
    cancelled = "cancelled"
    suppressed = "suppressed"

    @property
    def terminal(self) -> bool:
        """True once nothing more will happen without a resend."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {Status.sent, Status.delivered, Status.failed, Status.cancelled, Status.suppressed}
)

UserId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")]
TemplateKey = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")]
Locale = Annotated[
    str, Field(min_length=2, max_length=35, pattern=r"^[A-Za-z]{2,8}([-_][A-Za-z0-9]{1,8})*$")
]


def has_nul(value: Any) -> bool:
    """Whether a JSON value holds a NUL character anywhere, which PostgreSQL cannot store."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(key) or has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(has_nul(item) for item in value)
    return False


class NotificationBody(BaseModel):
    """What a client sends to ask for a notification (channel fixed by the route or given)."""

    model_config = ConfigDict(extra="forbid")

    user_id: UserId
    template: TemplateKey
    locale: Locale | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    send_at: datetime | None = Field(
        default=None, description="Deliver no earlier than this time (ISO 8601 with zone)."
    )
    fallback: list[Channel] = Field(
        default_factory=list,
        max_length=2,
        description="Channels to try next, in order, when the user cannot be reached on the "
        "first (no address or device, opted out, or the send failed for good).",
    )

    @field_validator("data")
    @classmethod
    def _storable(cls, value: dict[str, Any]) -> dict[str, Any]:
        if has_nul(value):
            raise ValueError("data may not contain the NUL character (\\u0000)")
        return value

    @field_validator("fallback")
    @classmethod
    def _distinct(cls, value: list[Channel]) -> list[Channel]:
        if len(set(value)) != len(value):
            raise ValueError("fallback names a channel twice")
        return value

    @field_validator("send_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("send_at needs a timezone, e.g. 2030-01-01T09:00:00Z")
        return value


class NotificationRequest(NotificationBody):
    """``POST /v1/notifications``: the body with the channel named."""

    channel: Channel

    @model_validator(mode="after")
    def _fallback_is_other_channels(self) -> NotificationRequest:
        if self.channel in self.fallback:
            raise ValueError(f"fallback repeats the channel {self.channel.value!r}")
        return self

    @property
    def channels(self) -> list[Channel]:
        """Every channel this request may use, in order."""
        return [self.channel, *self.fallback]


class QueuedNotification(NotificationRequest):
    """A RabbitMQ ingest message: the REST body plus the producer's id and tenant name."""

    id: uuid.UUID
    tenant: str = Field(min_length=1, max_length=128)


class FailedNotification(NotificationRequest):
    """Published to ``herald.failed`` when a send cycle ends ``failed``: the full request
    (``fallback`` included, so a replay may fall back as the first cycle could), whose it
    is, and the last error, for downstream consumers and ``herald dead replay``.

    ``fallback`` defaults to none: messages published before it was carried still decode.
    """

    id: uuid.UUID
    tenant_id: uuid.UUID
    tenant: str = ""
    cycle: int = 1
    attempts: int = 0
    last_error: str
    failed_at: datetime

    @property
    def message_id(self) -> str:
        """One per send cycle: a republished copy (activity retry) carries the same id."""
        return f"{self.id}:{self.cycle}"


class RetrySpec(BaseModel):
    """How the provider call is retried; turned into a Temporal ``RetryPolicy``."""

    max_attempts: int = 3
    initial_interval_seconds: float = 1.0
    backoff_coefficient: float = 2.0
    maximum_interval_seconds: float = 300.0
    send_timeout_seconds: float = 30.0
    # Times a send may be put off by an open circuit breaker without using an attempt.
    max_deferrals: int = 0


class NotificationInput(BaseModel):
    """The input of one ``NotificationWorkflow`` run (one send cycle)."""

    notification_id: uuid.UUID
    tenant_id: uuid.UUID
    tenant: str = ""
    channel: Channel
    user_id: str
    template: str
    locale: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    send_at: datetime | None = None
    created_at: datetime
    cycle: int = 1
    template_version: int | None = None
    retry: RetrySpec = Field(default_factory=RetrySpec)
    request_id: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    task_queue_prefix: str = "herald"
    fallback: list[Channel] = Field(default_factory=list)
    # Set when this notification is one recipient of a broadcast.
    broadcast_id: uuid.UUID | None = None

    @property
    def workflow_id(self) -> str:
        """The Temporal workflow id: the notification id, no PII."""
        return workflow_id_for(self.notification_id)


def workflow_id_for(notification_id: uuid.UUID | str) -> str:
    """``notification-<uuid>``: how a notification is found in Temporal."""
    return f"notification-{notification_id}"


class RecipientLookup(BaseModel):
    """Input of ``load_recipient``."""

    tenant_id: uuid.UUID
    user_id: str
    channel: Channel
    # The first lookup of a cycle that sends at once also makes sure the notification's
    # row and ``accepted`` event exist (the same write as ``record_accepted``).
    accepted: NotificationInput | None = None


class Recipient(BaseModel):
    """Where to send, or why not (``suppressed_reason`` set means do not send)."""

    address: str | None = None
    locale: str | None = None
    suppressed_reason: str | None = None


class RenderRequest(BaseModel):
    """Input of ``render_template``."""

    tenant_id: uuid.UUID
    template: str
    channel: Channel
    locale: str | None = None
    version: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class RenderedMessage(BaseModel):
    """A template rendered for one recipient."""

    template_version: int
    locale: str
    subject: str | None = None
    body: str


class SendRequest(BaseModel):
    """Input of a provider activity: one message to one address."""

    notification_id: uuid.UUID
    cycle: int = 1
    channel: Channel
    address: str
    message: RenderedMessage
    data: dict[str, Any] = Field(default_factory=dict)
    max_attempts: int = 3
    request_id: str | None = None
    max_deferrals: int = 0
    # Which channel of the fallback order this is (0: the one requested).
    leg: int = 0

    @property
    def idempotency_key(self) -> str:
        """Stable across every attempt of one send cycle; a resend gets a new one."""
        if self.cycle == 1:
            return str(self.notification_id)
        return f"{self.notification_id}-{self.cycle}"


class SendResult(BaseModel):
    """What the provider said when it accepted the message."""

    provider: str
    provider_message_id: str
    attempt: int = 1
    # True when the channel worker wrote both ``sending`` and ``sent`` to the log.
    recorded: bool = False


def sent_detail(channel: Channel, provider: str) -> str:
    """How the ``sent`` event names the channel and provider that delivered."""
    return f"sent on {channel.value} by {provider}"


class StatusEvent(BaseModel):
    """One transition, written to the append-only event log exactly once."""

    notification_id: uuid.UUID
    status: Status
    at: datetime
    cycle: int = 1
    attempt: int = 0
    provider: str | None = None
    provider_message_id: str | None = None
    template_version: int | None = None
    detail: str | None = None
    error: str | None = None
    # Events that only annotate (e.g. a refused cancel) do not move the current status.
    annotation: bool = False
    # Which channel of the fallback order this happened on (0: the one requested).
    leg: int = 0

    @property
    def key(self) -> str:
        """Unique per notification: a retried write of the same transition is a no-op."""
        base = f"{self.cycle}:{self.status.value}:{self.attempt}"
        if self.leg:
            base += f":leg{self.leg}"
        return f"{base}:note:{self.at.isoformat()}" if self.annotation else base


class AcceptedRecord(BaseModel):
    """Creates the notification row and its ``accepted`` event, idempotently."""

    notification: NotificationInput


class CancelRequest(BaseModel):
    """Signal ``cancel``: stop before the send."""

    reason: str = "cancelled by request"


class ResendRequest(BaseModel):
    """Signal ``resend``: start a new send cycle of a notification that ended."""

    reason: str = "resend requested"


class AttemptFailed(BaseModel):
    """Signal ``attempt_failed``: a provider attempt failed and Temporal will retry it."""

    cycle: int = 1
    leg: int = 0
    attempt: int
    provider: str
    error: str


class NotificationState(BaseModel):
    """Query ``status``: what the workflow knows now."""

    status: Status
    cycle: int
    attempts: int = 0
    last_error: str | None = None
    provider: str | None = None
    # The channel it went out on (differs from the requested one after a fallback).
    channel: Channel | None = None
