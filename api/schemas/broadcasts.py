"""Broadcasts: one message to an audience: their REST request and response bodies
(OpenAPI at ``/docs``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from herald.contracts import (
    Audience,
    BroadcastStatus,
    Channel,
    Locale,
    NotificationRequest,
    TemplateKey,
)

# Fastest a broadcast may be asked to go; the default is HERALD_BROADCAST_RATE_PER_SECOND.
MAX_BROADCAST_RATE = 10_000.0


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
