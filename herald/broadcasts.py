"""Broadcasts: one message to an audience (a topic, a list of user ids, or every user of
the tenant), fanned out durably by ``BroadcastWorkflow``.

What crosses process boundaries (the workflow's and its activities' inputs and outputs),
the ids a fan-out derives, the one write of a broadcast's row (by the API right after the
workflow start, and by the workflow as its first step) and the keyset reads of the
audience, shared by the API, the workers and the CLI.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from herald.contracts import Channel, UserId
from herald.db import Broadcast, TopicSubscriber, User, single_statements

WORKFLOW = "BroadcastWorkflow"
# Most user ids one broadcast (``audience.user_ids``) or one subscribe call may name.
MAX_USER_IDS = 10_000

TopicKey = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]


class BroadcastStatus(StrEnum):
    """Where a broadcast is: still starting recipients, or done with that."""

    running = "running"
    completed = "completed"
    cancelled = "cancelled"


class Audience(BaseModel):
    """Who a broadcast reaches: exactly one of a topic's subscribers, a list of user ids,
    or every user of the tenant."""

    model_config = ConfigDict(extra="forbid")

    topic: TopicKey | None = None
    user_ids: list[UserId] | None = Field(default=None, min_length=1, max_length=MAX_USER_IDS)
    all_users: bool | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Audience:
        given = [self.topic is not None, self.user_ids is not None, bool(self.all_users)]
        if sum(given) != 1:
            raise ValueError(
                'name exactly one audience: {"topic": key}, {"user_ids": [...]} '
                'or {"all_users": true}'
            )
        return self


def broadcast_workflow_id(broadcast_id: uuid.UUID | str) -> str:
    """``broadcast-<uuid>``: how a broadcast is found in Temporal."""
    return f"broadcast-{broadcast_id}"


def recipient_notification_id(broadcast_id: uuid.UUID, user_id: str) -> uuid.UUID:
    """The notification one recipient of a broadcast gets: the same every time it is
    derived, so a fan-out page retried after a crash starts nobody twice."""
    return uuid.uuid5(broadcast_id, user_id)


class BroadcastDefinition(BaseModel):
    """What a broadcast sends and to whom: its row in ``broadcasts``."""

    broadcast_id: uuid.UUID
    tenant_id: uuid.UUID
    channel: Channel
    template: str
    locale: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    fallback: list[Channel] = Field(default_factory=list)
    audience: Audience
    send_at: datetime | None = None
    rate_per_second: float
    total: int
    request_hash: str | None = None
    created_at: datetime


class BroadcastInput(BaseModel):
    """The input of one ``BroadcastWorkflow`` run: one page of the fan-out.

    Each run starts one page of recipients and continues as new with the cursor moved on,
    so no history ever holds more than one page. Only the first run carries the
    ``definition``, to write the broadcast's row as its first step; later runs read it.
    """

    broadcast_id: uuid.UUID
    tenant_id: uuid.UUID
    tenant: str = ""
    channel: Channel
    template: str
    send_at: datetime | None = None
    rate_per_second: float = 50.0
    page_size: int = 200
    request_id: str | None = None
    # Keyset cursor: the last user id started (user ids are never empty).
    after: str = ""
    started: int = 0
    definition: BroadcastDefinition | None = None

    @property
    def workflow_id(self) -> str:
        """The Temporal workflow id."""
        return broadcast_workflow_id(self.broadcast_id)


class FanOutPage(BaseModel):
    """Input of ``fan_out_page``: start the next ``limit`` recipients after ``after``."""

    broadcast_id: uuid.UUID
    tenant_id: uuid.UUID
    tenant: str = ""
    after: str = ""
    limit: int
    request_id: str | None = None
    # Spread the page's starts evenly at this rate (0: as fast as they go).
    per_second: float = 0.0


class FanOutResult(BaseModel):
    """What one page did. ``started`` counts every recipient of the page, whether this
    attempt started them or an earlier one had (``new`` are the former)."""

    last_user_id: str
    started: int = 0
    new: int = 0
    exhausted: bool = False
    # The broadcast's cancel was asked for (seen in PostgreSQL): nothing was started.
    cancelled: bool = False


class BroadcastEnd(BaseModel):
    """Input of ``end_broadcast``: the broadcast has started everyone it will."""

    broadcast_id: uuid.UUID
    status: BroadcastStatus
    started: int


class BroadcastCancel(BaseModel):
    """Signal ``cancel``: start no more recipients."""

    reason: str = "cancelled by request"


class BroadcastState(BaseModel):
    """The workflow's result."""

    status: BroadcastStatus
    started: int


# --- PostgreSQL ------------------------------------------------------------------------

_BROADCASTS = Broadcast.__table__


async def write_broadcast(engine: AsyncEngine, definition: BroadcastDefinition) -> None:
    """Create the broadcast's row unless it exists (the API right after the workflow
    start, and the workflow's first step: whichever comes first writes it)."""
    statement = (
        insert(Broadcast)
        .values(
            id=definition.broadcast_id,
            tenant_id=definition.tenant_id,
            channel=definition.channel.value,
            template=definition.template,
            locale=definition.locale,
            data=definition.data,
            fallback=[channel.value for channel in definition.fallback] or None,
            audience=definition.audience.model_dump(exclude_none=True),
            send_at=definition.send_at,
            rate_per_second=definition.rate_per_second,
            status=BroadcastStatus.running.value,
            total=definition.total,
            request_hash=definition.request_hash,
            created_at=definition.created_at,
        )
        .on_conflict_do_nothing()
    )
    async with single_statements(engine) as conn:
        await conn.execute(statement)


async def audience_size(conn: AsyncConnection, tenant_id: uuid.UUID, audience: Audience) -> int:
    """How many recipients the audience has now."""
    if audience.user_ids is not None:
        return len(set(audience.user_ids))
    if audience.topic is not None:
        query = select(func.count()).where(
            TopicSubscriber.tenant_id == tenant_id, TopicSubscriber.topic_key == audience.topic
        )
    else:
        query = select(func.count()).where(User.tenant_id == tenant_id)
    return int((await conn.execute(query)).scalar_one())


# One page of each kind of audience, in user id order after the cursor: each walks an
# index (the subscribers' and users' primary keys) from the cursor on.
_TOPIC_PAGE = text(
    """
    SELECT user_id FROM topic_subscribers
    WHERE tenant_id = :tenant_id AND topic_key = :topic AND user_id > :after
    ORDER BY user_id LIMIT :limit
    """
)
_USERS_PAGE = text(
    """
    SELECT id FROM users WHERE tenant_id = :tenant_id AND id > :after ORDER BY id LIMIT :limit
    """
)
# A list of user ids is small (bounded by MAX_USER_IDS) and read from the broadcast's row.
_LISTED_PAGE = text(
    """
    SELECT DISTINCT listed FROM broadcasts,
        jsonb_array_elements_text(audience -> 'user_ids') AS listed
    WHERE id = :broadcast_id AND listed > :after
    ORDER BY listed LIMIT :limit
    """
)


async def audience_page(
    conn: AsyncConnection,
    broadcast_id: uuid.UUID,
    tenant_id: uuid.UUID,
    audience: Audience,
    after: str,
    limit: int,
) -> list[str]:
    """The next ``limit`` user ids of the audience after ``after``, in order."""
    params: dict[str, Any] = {"tenant_id": tenant_id, "after": after, "limit": limit}
    if audience.user_ids is not None:
        query, params = _LISTED_PAGE, params | {"broadcast_id": broadcast_id}
    elif audience.topic is not None:
        query, params = _TOPIC_PAGE, params | {"topic": audience.topic}
    else:
        query = _USERS_PAGE
    return [row[0] for row in await conn.execute(query, params)]


_END = text(
    """
    UPDATE broadcasts SET
        status = CAST(:status AS varchar),
        ended_at = COALESCE(ended_at, now()),
        total = CASE WHEN CAST(:status AS varchar) = 'completed' THEN :started ELSE total END
    WHERE id = :broadcast_id AND status = 'running'
    """
)


async def end_broadcast(engine: AsyncEngine, end: BroadcastEnd) -> None:
    """Record that the broadcast has started everyone it will (a retried write is a no-op).

    A completed broadcast's ``total`` becomes the number it reached: subscribers who
    joined while it ran were reached too, those who left before their turn were not.
    """
    async with single_statements(engine) as conn:
        await conn.execute(
            _END,
            {"status": end.status.value, "started": end.started, "broadcast_id": end.broadcast_id},
        )
