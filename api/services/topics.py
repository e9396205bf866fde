"""Topics: named audiences of a tenant's users, subscribed to in bulk.

The REST routes, ``herald topic import`` and the console use these functions.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import ARRAY, String, bindparam, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api.errors import not_found
from api.pagination import decode_cursor, encode_cursor
from api.schemas.topics import (
    SubscriberPage,
    SubscribersAdded,
    TopicIn,
    TopicOut,
    TopicPage,
)
from api.services.caps import within_cap
from herald.db import Topic, TopicSubscriber

_TOPICS = Topic.__table__

# Every id in one statement, as one array parameter: 10,000 rows in one round trip.
_SUBSCRIBE = text(
    """
    INSERT INTO topic_subscribers (tenant_id, topic_key, user_id)
    SELECT :tenant_id, :topic, listed FROM unnest(:user_ids) AS listed
    ON CONFLICT DO NOTHING
    """
).bindparams(bindparam("user_ids", type_=ARRAY(String)))


async def _count(conn: AsyncConnection, tenant_id: uuid.UUID, key: str) -> int:
    found = await conn.execute(
        select(func.count()).where(
            TopicSubscriber.tenant_id == tenant_id, TopicSubscriber.topic_key == key
        )
    )
    return int(found.scalar_one())


async def _topic(conn: AsyncConnection, tenant_id: uuid.UUID, key: str) -> TopicOut | None:
    row = (
        (await conn.execute(select(_TOPICS).where(Topic.tenant_id == tenant_id, Topic.key == key)))
        .mappings()
        .first()
    )
    if row is None:
        return None
    return TopicOut.model_validate(dict(row) | {"subscribers": await _count(conn, tenant_id, key)})


async def put_topic(
    engine: AsyncEngine,
    tenant_id: uuid.UUID,
    key: str,
    body: TopicIn,
    *,
    max_topics: int | None = None,
) -> tuple[TopicOut, bool]:
    """Create the topic, or rename it; ``True`` if it is new. Creating one is a 409 once
    the tenant has ``max_topics``."""
    async with engine.begin() as conn:
        this_one = select(Topic.key).where(Topic.tenant_id == tenant_id, Topic.key == key)
        if max_topics is not None and (await conn.execute(this_one)).first() is None:
            await within_cap(
                conn,
                tenant_id,
                select(Topic.key).where(Topic.tenant_id == tenant_id),
                cap=max_topics,
                what="topics",
                setting="HERALD_MAX_TOPICS",
            )
        created = await conn.execute(
            insert(Topic)
            .values(tenant_id=tenant_id, key=key, name=body.name)
            .on_conflict_do_update(
                index_elements=[Topic.tenant_id, Topic.key],
                set_={"name": body.name, "updated_at": datetime.now(UTC)},
            )
            # xmax is 0 only for a row this statement inserted.
            .returning(text("xmax = 0"))
        )
        is_new = bool(created.scalar_one())
        topic = await _topic(conn, tenant_id, key)
    assert topic is not None
    return topic, is_new


async def get_topic(engine: AsyncEngine, tenant_id: uuid.UUID, key: str) -> TopicOut:
    """The topic with its subscriber count."""
    async with engine.connect() as conn:
        topic = await _topic(conn, tenant_id, key)
    if topic is None:
        raise not_found(f"topic {key!r}")
    return topic


async def subscribe(
    engine: AsyncEngine, tenant_id: uuid.UUID, key: str, user_ids: Sequence[str]
) -> SubscribersAdded:
    """Subscribe users (those subscribed already stay as they are); 404 for no topic."""
    async with engine.begin() as conn:
        exists = await conn.execute(
            select(Topic.key).where(Topic.tenant_id == tenant_id, Topic.key == key)
        )
        if exists.first() is None:
            raise not_found(f"topic {key!r}")
        added = await conn.execute(
            _SUBSCRIBE,
            {"tenant_id": tenant_id, "topic": key, "user_ids": sorted(set(user_ids))},
        )
        count = await _count(conn, tenant_id, key)
    return SubscribersAdded(topic=key, added=added.rowcount, subscribers=count)


async def unsubscribe(engine: AsyncEngine, tenant_id: uuid.UUID, key: str, user_id: str) -> None:
    """Unsubscribe one user (no error if they were not subscribed); 404 for no topic."""
    async with engine.begin() as conn:
        exists = await conn.execute(
            select(Topic.key).where(Topic.tenant_id == tenant_id, Topic.key == key)
        )
        if exists.first() is None:
            raise not_found(f"topic {key!r}")
        await conn.execute(
            delete(TopicSubscriber).where(
                TopicSubscriber.tenant_id == tenant_id,
                TopicSubscriber.topic_key == key,
                TopicSubscriber.user_id == user_id,
            )
        )


async def list_subscribers(
    engine: AsyncEngine, tenant_id: uuid.UUID, key: str, *, limit: int, cursor: str | None
) -> SubscriberPage:
    """One page of the topic's subscribers by user id (a range scan of the subscribers'
    primary key from the cursor on); 404 for no topic."""
    query = select(TopicSubscriber.user_id).where(
        TopicSubscriber.tenant_id == tenant_id, TopicSubscriber.topic_key == key
    )
    if cursor is not None:
        (after,) = decode_cursor(cursor, str)
        query = query.where(TopicSubscriber.user_id > after)
    async with engine.connect() as conn:
        exists = await conn.execute(
            select(Topic.key).where(Topic.tenant_id == tenant_id, Topic.key == key)
        )
        if exists.first() is None:
            raise not_found(f"topic {key!r}")
        rows = list(
            (await conn.execute(query.order_by(TopicSubscriber.user_id).limit(limit + 1)))
            .scalars()
            .all()
        )
    items = rows[:limit]
    next_cursor = encode_cursor(items[-1]) if len(rows) > limit else None
    return SubscriberPage(items=items, next_cursor=next_cursor)


async def list_topics(
    engine: AsyncEngine, tenant_id: uuid.UUID, *, limit: int, cursor: str | None
) -> TopicPage:
    """The tenant's topics by key, with their subscriber counts, one page at a time."""
    counts = (
        select(func.count())
        .where(TopicSubscriber.tenant_id == Topic.tenant_id, TopicSubscriber.topic_key == Topic.key)
        .scalar_subquery()
    )
    query = select(_TOPICS, counts.label("subscribers")).where(Topic.tenant_id == tenant_id)
    if cursor is not None:
        (after,) = decode_cursor(cursor, str)
        query = query.where(Topic.key > after)
    query = query.order_by(Topic.key).limit(limit + 1)
    async with engine.connect() as conn:
        rows = list((await conn.execute(query)).mappings())
    items = [TopicOut.model_validate(dict(row)) for row in rows[:limit]]
    more = len(rows) > limit
    next_cursor = encode_cursor(items[-1].key) if more else None
    return TopicPage(items=items, next_cursor=next_cursor)


async def ensure_topic(engine: AsyncEngine, tenant_id: uuid.UUID, key: str) -> bool:
    """Create the topic unless it exists (its name is left as it is); True if created."""
    async with engine.begin() as conn:
        created = await conn.execute(
            insert(Topic).values(tenant_id=tenant_id, key=key).on_conflict_do_nothing()
        )
    return bool(created.rowcount)
