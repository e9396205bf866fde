"""Every write to ``inbox_messages`` goes through here.

Each change appends an ``inbox_events`` row and calls ``pg_notify('herald_inbox',
{"tenant", "user_id", "event_id"})`` in the transaction that makes the change, so a
listener never hears of an event it cannot read yet, and a reader replaying
``inbox_events`` after an id misses nothing. Callers pass a connection inside a
transaction (``engine.begin()``).

Counts come from ``inbox_messages`` in one query (``counts``), never from a counter:

- ``total``: messages not archived;
- ``unread``: not archived and not read;
- ``unseen``: not archived and not seen.

A test key's messages (``test``) are a separate inbox: only a token issued by a test key
shows them, and a live token never does.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from herald.inbox.models import NOTIFY_CHANNEL

CREATED = "message.created"
UPDATED = "message.updated"

Action = Literal["seen", "read", "unread", "archive", "unarchive"]
ACTIONS: tuple[Action, ...] = ("seen", "read", "unread", "archive", "unarchive")

_APPEND = text(
    f"""
    WITH event AS (
        INSERT INTO inbox_events (tenant, user_id, type, message_id)
        SELECT tenant, user_id, :type, id FROM inbox_messages WHERE id = ANY(:ids)
        ORDER BY created_at, id
        RETURNING id, tenant, user_id
    )
    SELECT id, pg_notify(
        '{NOTIFY_CHANNEL}',
        json_build_object('tenant', tenant, 'user_id', user_id, 'event_id', id)::text
    ) FROM event
    """
)


async def append_events(
    conn: AsyncConnection, message_ids: list[uuid.UUID], type_: str
) -> list[int]:
    """Log ``type_`` for each message and notify listeners (in the caller's transaction).

    Test messages are no one's live feed: their changes are not logged."""
    if not message_ids:
        return []
    rows = await conn.execute(_APPEND, {"ids": message_ids, "type": type_})
    return [row[0] for row in rows]


_INSERT = text(
    """
    INSERT INTO inbox_messages
        (id, tenant, user_id, notification_id, title, body, action_url, category, test)
    VALUES
        (:id, :tenant, :user_id, :notification_id, :title, :body, :action_url, :category, :test)
    ON CONFLICT (notification_id) DO NOTHING
    RETURNING id
    """
)
_OF_NOTIFICATION = text("SELECT id FROM inbox_messages WHERE notification_id = :notification_id")


async def create_message(
    conn: AsyncConnection,
    *,
    tenant: uuid.UUID,
    user_id: str,
    notification_id: uuid.UUID,
    title: str,
    body: str,
    action_url: str | None = None,
    category: str | None = None,
    test: bool = False,
) -> tuple[uuid.UUID, bool]:
    """Store the message of ``notification_id`` once: ``(message id, created now)``.

    A retried provider step finds the message its earlier run stored and adds nothing."""
    params = {
        "id": uuid.uuid4(),
        "tenant": tenant,
        "user_id": user_id,
        "notification_id": notification_id,
        "title": title,
        "body": body,
        "action_url": action_url,
        "category": category,
        "test": test,
    }
    created = (await conn.execute(_INSERT, params)).scalar()
    if created is None:
        existing = (
            await conn.execute(_OF_NOTIFICATION, {"notification_id": notification_id})
        ).scalar_one()
        return existing, False
    if not test:
        await append_events(conn, [created], CREATED)
    return created, True


# What each action sets, and which rows it changes (the others are already so).
_SET: dict[Action, tuple[str, str]] = {
    "seen": ("seen_at = now()", "m.seen_at IS NULL"),
    "read": ("read_at = now(), seen_at = coalesce(m.seen_at, now())", "m.read_at IS NULL"),
    "unread": ("read_at = NULL", "m.read_at IS NOT NULL"),
    "archive": (
        "archived_at = now(), seen_at = coalesce(m.seen_at, now())",
        "m.archived_at IS NULL",
    ),
    "unarchive": ("archived_at = NULL", "m.archived_at IS NOT NULL"),
}


@dataclass(frozen=True)
class Change:
    """One message an action changed, and which engagement it was the first of."""

    message_id: uuid.UUID
    notification_id: uuid.UUID
    first_seen: bool
    first_read: bool
    archived: bool
    at: datetime
    # The notification's send cycle now (its engagement events belong to it).
    cycle: int


def _update(action: Action, *, some: bool) -> Any:
    assignments, changes = _SET[action]
    chosen = "AND m.id = ANY(:ids)" if some else ""
    return text(
        f"""
        WITH old AS (
            SELECT m.id, m.seen_at, m.read_at, m.archived_at FROM inbox_messages m
            WHERE m.tenant = :tenant AND m.user_id = :user_id AND m.test = :test
              AND {changes} {chosen}
            ORDER BY m.id
            FOR UPDATE
        )
        UPDATE inbox_messages m SET {assignments}
        FROM old WHERE m.id = old.id
        RETURNING m.id, m.notification_id,
            old.seen_at IS NULL AND m.seen_at IS NOT NULL AS first_seen,
            old.read_at IS NULL AND m.read_at IS NOT NULL AS first_read,
            old.archived_at IS NULL AND m.archived_at IS NOT NULL AS archived,
            now() AS at,
            coalesce((SELECT n.cycle FROM notifications n WHERE n.id = m.notification_id), 1)
                AS cycle
        """
    )


_UPDATES = {
    (action, some): _update(action, some=some) for action in ACTIONS for some in (True, False)
}


async def apply(
    conn: AsyncConnection,
    *,
    tenant: uuid.UUID,
    user_id: str,
    action: Action,
    ids: list[uuid.UUID] | None,
    test: bool = False,
) -> list[Change]:
    """Apply ``action`` to the user's messages ``ids`` (None: all of them); the rows it
    changed, each logged as ``message.updated``. Messages already so are left alone."""
    params: dict[str, Any] = {"tenant": tenant, "user_id": user_id, "test": test}
    if ids is not None:
        if not ids:
            return []
        params["ids"] = ids
    rows = (await conn.execute(_UPDATES[action, ids is not None], params)).all()
    changes = [
        Change(
            message_id=row.id,
            notification_id=row.notification_id,
            first_seen=row.first_seen,
            first_read=row.first_read,
            archived=row.archived,
            at=row.at,
            cycle=row.cycle,
        )
        for row in rows
    ]
    if not test:
        await append_events(conn, [change.message_id for change in changes], UPDATED)
    return changes


_COUNTS = text(
    """
    SELECT
        count(*) FILTER (WHERE seen_at IS NULL) AS unseen,
        count(*) FILTER (WHERE read_at IS NULL) AS unread,
        count(*) AS total
    FROM inbox_messages
    WHERE tenant = :tenant AND user_id = :user_id AND test = :test AND archived_at IS NULL
    """
)


async def counts(
    conn: AsyncConnection, tenant: uuid.UUID, user_id: str, *, test: bool = False
) -> dict[str, int]:
    """``{unseen, unread, total}`` of the user's inbox, from the table itself."""
    row = (await conn.execute(_COUNTS, {"tenant": tenant, "user_id": user_id, "test": test})).one()
    return {"unseen": row.unseen, "unread": row.unread, "total": row.total}
