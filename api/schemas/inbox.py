"""The in-app inbox's REST bodies (``/v1/inbox``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from herald.contracts import UserId
from herald.inbox.tokens import DEFAULT_TTL_SECONDS, MAX_TTL_SECONDS, MIN_TTL_SECONDS

# Most message ids one bulk action may name.
MAX_BULK_IDS = 1000


class TokenIn(BaseModel):
    """``POST /v1/inbox/tokens``."""

    model_config = ConfigDict(extra="forbid")

    user_id: UserId
    ttl_seconds: int = Field(
        DEFAULT_TTL_SECONDS,
        ge=MIN_TTL_SECONDS,
        le=MAX_TTL_SECONDS,
        strict=True,
        description="How long the token is valid (60 s to 7 days; default 1 hour)",
    )


class TokenOut(BaseModel):
    """A user token: give it to that user's browser only."""

    token: str
    expires_at: datetime


class Counts(BaseModel):
    """The user's inbox, archived messages excluded: ``total`` messages, of which
    ``unread`` are not read and ``unseen`` not seen."""

    unseen: int
    unread: int
    total: int


class MessageOut(BaseModel):
    """One message of the inbox."""

    id: uuid.UUID
    notification_id: uuid.UUID
    title: str
    body: str
    action_url: str | None
    category: str | None
    created_at: datetime
    seen_at: datetime | None
    read_at: datetime | None
    archived_at: datetime | None


class MessagePage(BaseModel):
    """A page of the feed, newest first, with the inbox's counts now."""

    items: list[MessageOut]
    next_cursor: str | None
    counts: Counts


class MessageChanged(BaseModel):
    """The message after an action, and the inbox's counts."""

    message: MessageOut
    counts: Counts


class BulkIn(BaseModel):
    """``POST /v1/inbox/messages/bulk``: an action on the messages named, or on all."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["seen", "read", "archive"]
    ids: list[uuid.UUID] | None = Field(None, min_length=1, max_length=MAX_BULK_IDS)


class BulkOut(BaseModel):
    """How many messages the action changed (others were already so), and the counts."""

    changed: int
    counts: Counts
