"""Submitting and reading notifications, one or a batch, and their receipts: their REST
request and response bodies (OpenAPI at ``/docs``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
)

from herald.contracts import (
    Channel,
    Engagement,
    NotificationRequest,
    Status,
    Text,
)


class NotificationAccepted(BaseModel):
    """The answer to a submission."""

    id: uuid.UUID
    status: Status
    status_url: str


class NotificationOut(BaseModel):
    """``GET /v1/notifications/{id}``."""

    id: uuid.UUID
    channel: Channel
    user_id: str
    template: str
    template_version: int | None
    status: Status
    attempts: int
    provider: str | None
    provider_message_id: str | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    cycle: int = 1
    send_at: datetime | None = None
    fallback: list[Channel] = Field(default_factory=list)
    # A request that joined a digest: the digest, and once it closed, the notification
    # it was sent as (whose status this one then shows).
    digest_id: uuid.UUID | None = None
    digest_notification_id: uuid.UUID | None = None
    # Made with a test key: never reached a provider.
    test: bool = False
    # The broadcast this notification is one recipient of, if any.
    broadcast_id: uuid.UUID | None = None

    @field_validator("fallback", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return [] if value is None else value


class NotificationPage(BaseModel):
    """One page of ``GET /v1/notifications``; pass ``next_cursor`` as ``cursor`` for more."""

    items: list[NotificationOut]
    next_cursor: str | None


class EventOut(BaseModel):
    """One entry of the append-only log."""

    # A status transition, or what the user did with an in-app message.
    status: Status | Engagement
    attempt: int
    at: datetime
    detail: str | None
    provider: str | None = None
    cycle: int = 1


MAX_BATCH = 1000


class BatchItem(NotificationRequest):
    """One request of a batch: the ``POST /v1/notifications`` body, with its own key."""

    idempotency_key: Text | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="As the Idempotency-Key header of a single submission, for this item.",
    )


class BatchIn(BaseModel):
    """``POST /v1/notifications/batch``. Items are validated one by one, so one that is
    invalid fails alone; each is a ``BatchItem``."""

    model_config = ConfigDict(extra="forbid")

    notifications: list[Any] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description="Up to 1,000 notification requests, each as the body of "
        "POST /v1/notifications plus an optional idempotency_key.",
    )


class BatchResult(BaseModel):
    """What became of one item: ``202`` accepted, ``200`` a replay of its idempotency key,
    or the error status a single submission would have got, with the same ``detail``
    (a ``422`` names the field, ``loc`` counting from the batch's body)."""

    index: int
    status: int
    id: uuid.UUID | None = None
    error: dict[str, Any] | None = None


class BatchOut(BaseModel):
    """One result per item, in the items' order."""

    results: list[BatchResult]


class ReceiptIn(BaseModel):
    """``POST /v1/notifications/{id}/receipt``: what became of a sent notification, as
    the client's app or backend knows it (push has no provider receipt)."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["delivered", "undelivered"]
    reason: Text | None = Field(default=None, max_length=500)
