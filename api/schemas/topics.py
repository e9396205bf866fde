"""Topics and their subscribers: their REST request and response bodies
(OpenAPI at ``/docs``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

from herald.contracts import (
    MAX_USER_IDS,
    Text,
    UserId,
)


class TopicIn(BaseModel):
    """``PUT /v1/topics/{key}``."""

    model_config = ConfigDict(extra="forbid")

    name: Text | None = Field(default=None, max_length=256)


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


class SubscriberPage(BaseModel):
    """One page of a topic's subscribers, by user id; pass ``next_cursor`` as ``cursor``."""

    items: list[str]
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
