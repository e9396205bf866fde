"""Broadcasts: one message to an audience (a topic, a list of user ids, or every user of
the tenant), fanned out durably by ``BroadcastWorkflow``.

The one start of a broadcast's workflow, the one write of its row (by the API right after
the start, and by the workflow as its first step) and the keyset reads of its audience,
shared by the API, the workers and the CLI. What crosses process boundaries (the
workflow's and its activities' inputs and outputs, the ids a fan-out derives) is in
``herald.contracts`` beside the other workflows' models.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from herald import search
from herald.contracts import (
    Audience,
    BroadcastDefinition,
    BroadcastEnd,
    BroadcastInput,
    BroadcastStatus,
)
from herald.db import Broadcast, TopicSubscriber, User, single_statements
from herald.settings import Settings
from herald.temporal import core_task_queue

WORKFLOW = "BroadcastWorkflow"


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
            test=definition.test,
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


async def start_broadcast(client: Client, settings: Settings, job: BroadcastInput) -> bool:
    """Durably start the broadcast's workflow; False if this broadcast id was started
    before (the one place a ``BroadcastWorkflow`` is started)."""
    try:
        await client.start_workflow(
            WORKFLOW,
            job,
            id=job.workflow_id,
            task_queue=core_task_queue(settings),
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(search.STATUS, BroadcastStatus.running.value),
                    SearchAttributePair(search.CHANNEL, job.channel.value),
                    SearchAttributePair(search.TEMPLATE, job.template),
                    SearchAttributePair(search.TENANT, job.tenant),
                    SearchAttributePair(search.BROADCAST_STARTED, 0),
                ]
            ),
            static_summary=(
                f"broadcast · {job.channel.value} · template {job.template} · tenant {job.tenant}"
            ),
            static_details=(
                f"**broadcast** `{job.broadcast_id}`\n\n"
                f"**audience** {job.definition.total if job.definition else '?'} recipients "
                f"at {job.rate_per_second:g}/s"
            ),
        )
    except WorkflowAlreadyStartedError:
        return False
    return True
