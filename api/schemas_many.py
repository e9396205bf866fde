"""Request and response bodies for many recipients at once: batch submission, topics and
broadcasts (part of the public contract, OpenAPI at ``/docs``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from herald.broadcasts import MAX_USER_IDS, Audience, BroadcastStatus
from herald.contracts import Channel, Locale, NotificationRequest, TemplateKey, UserId

MAX_BATCH = 1000
# Fastest a broadcast may be asked to go; the default is HERALD_BROADCAST_RATE_PER_SECOND.
MAX_BROADCAST_RATE = 10_000.0


class BatchItem(NotificationRequest):
    """One request of a batch: the ``POST /v1/notifications`` body, with its own key."""

    idempotency_key: str | None = Field(
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


class TopicIn(BaseModel):
    """``PUT /v1/topics/{key}``."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=256)


class TopicOut(BaseModel):
    """A topic and how many users it has."""

    key: str
    name: str | None
    subscribers: int
    created_at: datetime
    updated_at: datetime


class TopicPage(BaseModel):
    """One page of ``GET /v1/topics``, ordered by key."""

    items: list[TopicOut]
    next_cursor: str | None


class SubscribersIn(BaseModel):
    """``POST /v1/topics/{key}/subscribers``: users need not exist yet (a broadcast to
    one who does not is ``suppressed`` for them)."""

    model_config = ConfigDict(extra="forbid")

    user_ids: list[UserId] = Field(min_length=1, max_length=MAX_USER_IDS)


class SubscribersAdded(BaseModel):
    """The outcome of a subscribe call."""

    topic: str
    added: int
    subscribers: int


class BroadcastIn(BaseModel):
    """``POST /v1/broadcasts``: one message to an audience; each recipient gets an
    ordinary notification."""

    model_config = ConfigDict(extra="forbid")

    channel: Channel
    template: TemplateKey
    locale: Locale | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    audience: Audience
    fallback: list[Channel] = Field(default_factory=list, max_length=2)
    send_at: datetime | None = Field(
        default=None, description="Start no recipient before this time (ISO 8601 with zone)."
    )
    rate_per_second: float | None = Field(
        default=None,
        gt=0,
        le=MAX_BROADCAST_RATE,
        description="Recipients started per second (default HERALD_BROADCAST_RATE_PER_SECOND).",
    )

    @model_validator(mode="after")
    def _valid_for_each_recipient(self) -> BroadcastIn:
        # Every recipient's request must pass the single submission's checks (data, fallback,
        # send_at); checked once here, with a stand-in user.
        try:
            self.request_for("broadcast")
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"{where}: {first['msg']}" if where else first["msg"]) from None
        return self

    def request_for(self, user_id: str) -> NotificationRequest:
        """The notification request of one recipient."""
        return NotificationRequest(
            channel=self.channel,
            user_id=user_id,
            template=self.template,
            locale=self.locale,
            data=self.data,
            send_at=self.send_at,
            fallback=self.fallback,
        )


class BroadcastAccepted(BaseModel):
    """The answer to ``POST /v1/broadcasts``."""

    id: uuid.UUID
    status: BroadcastStatus
    status_url: str


class BroadcastOut(BaseModel):
    """``GET /v1/broadcasts/{id}``: where the fan-out is, counted from its notifications.

    ``started`` = ``sent`` + ``failed`` + ``suppressed`` + ``cancelled`` + ``in_flight``;
    ``total`` is the audience's size when the broadcast was created, and the number it
    reached once ``completed``. ``sent`` includes those since ``delivered``. A list of
    user ids shows as ``{"user_ids_count": n}`` in ``audience``.
    """

    id: uuid.UUID
    status: BroadcastStatus
    channel: Channel
    template: str
    audience: dict[str, Any]
    total: int
    started: int
    sent: int
    failed: int
    suppressed: int
    cancelled: int
    in_flight: int
    rate_per_second: float
    send_at: datetime | None
    created_at: datetime
    ended_at: datetime | None
    cancel_requested_at: datetime | None = None


class BroadcastPage(BaseModel):
    """One page of ``GET /v1/broadcasts``, newest first."""

    items: list[BroadcastOut]
    next_cursor: str | None
