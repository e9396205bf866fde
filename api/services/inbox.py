"""The in-app inbox: user tokens, the feed and the actions on it.

Writes go through ``herald.inbox.store`` (which logs each change for the stream in the
same transaction); engagement is told to the notification's log, webhooks, workflow and
flow run once the change is committed (``herald.inbox.engagement``).
"""

from __future__ import annotations

import uuid
from typing import Literal

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from api.backends import Backends
from api.errors import not_found
from api.pagination import NEWEST_FIRST, decode_cursor, encode_cursor
from api.schemas.inbox import BulkOut, Counts, MessageChanged, MessageOut, MessagePage, TokenOut
from herald.db import User
from herald.inbox import store, tokens
from herald.inbox.engagement import engaged
from herald.inbox.models import InboxMessage
from herald.inbox.tokens import InboxUser
from herald.tenants import TenantContext

Filter = Literal["unread", "unseen", "all"]

_COLUMNS = (
    InboxMessage.id,
    InboxMessage.notification_id,
    InboxMessage.title,
    InboxMessage.body,
    InboxMessage.action_url,
    InboxMessage.category,
    InboxMessage.created_at,
    InboxMessage.seen_at,
    InboxMessage.read_at,
    InboxMessage.archived_at,
)


def _mine(user: InboxUser) -> list[ColumnElement[bool]]:
    return [
        InboxMessage.tenant == user.tenant,
        InboxMessage.user_id == user.user_id,
        InboxMessage.test == user.test,
    ]


async def _apply(
    conn: AsyncConnection, user: InboxUser, action: store.Action, ids: list[uuid.UUID] | None
) -> list[store.Change]:
    """``action`` on the user's messages ``ids`` (None: all of them), in ``conn``'s
    transaction; the changes it made."""
    return await store.apply(
        conn, tenant=user.tenant, user_id=user.user_id, action=action, ids=ids, test=user.test
    )


async def _counts(conn: AsyncConnection, user: InboxUser) -> Counts:
    """The user's unseen, unread and total messages."""
    return Counts(**await store.counts(conn, user.tenant, user.user_id, test=user.test))


async def issue_token(
    backends: Backends, tenant: TenantContext, user_id: str, ttl_seconds: int
) -> TokenOut:
    """A token for one user of the tenant (a test key's: for that user's test inbox)."""
    async with backends.engine.begin() as conn:
        known = (
            await conn.execute(
                select(User.id).where(User.tenant_id == tenant.id, User.id == user_id)
            )
        ).first()
        if known is None:
            raise not_found(f"user {user_id!r}")
        secret = await tokens.tenant_secret(conn, tenant.id)
    token, expires = tokens.sign(
        secret, InboxUser(tenant=tenant.id, user_id=user_id, test=tenant.test), ttl_seconds
    )
    return TokenOut(token=token, expires_at=expires)


async def list_messages(
    backends: Backends,
    user: InboxUser,
    which: Filter,
    archived: bool,
    cursor: str | None,
    limit: int,
) -> MessagePage:
    """A page of the feed, newest first (``archived``: the archived messages instead)."""
    query = select(*_COLUMNS).where(
        *_mine(user),
        InboxMessage.archived_at.is_not(None) if archived else InboxMessage.archived_at.is_(None),
    )
    if which == "unread":
        query = query.where(InboxMessage.read_at.is_(None))
    elif which == "unseen":
        query = query.where(InboxMessage.seen_at.is_(None))
    if cursor is not None:
        at, after = decode_cursor(cursor, *NEWEST_FIRST)
        query = query.where(
            or_(
                InboxMessage.created_at < at,
                and_(InboxMessage.created_at == at, InboxMessage.id > after),
            )
        )
    # As the feed's index is ordered: one range scan per page.
    query = query.order_by(InboxMessage.created_at.desc(), InboxMessage.id).limit(limit + 1)
    async with backends.engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
        counts = await _counts(conn, user)
    items = [MessageOut.model_validate(dict(row)) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        next_cursor = encode_cursor(last.created_at, last.id)
    return MessagePage(items=items, next_cursor=next_cursor, counts=counts)


async def act(
    backends: Backends, user: InboxUser, message_id: uuid.UUID, action: store.Action
) -> MessageChanged:
    """One action on one of the user's messages (404 for anyone else's); idempotent."""
    async with backends.engine.begin() as conn:
        changes = await _apply(conn, user, action, [message_id])
        mine = select(*_COLUMNS).where(*_mine(user), InboxMessage.id == message_id)
        row = (await conn.execute(mine)).mappings().first()
        if row is None:
            raise not_found(f"message {message_id}")
        counts = await _counts(conn, user)
    await engaged(backends.engine, backends.temporal, changes)
    return MessageChanged(message=MessageOut.model_validate(dict(row)), counts=counts)


async def bulk(
    backends: Backends, user: InboxUser, action: store.Action, ids: list[uuid.UUID] | None
) -> BulkOut:
    """An action on the messages ``ids`` that are the user's (others are ignored), or on
    all of them."""
    async with backends.engine.begin() as conn:
        changes = await _apply(conn, user, action, sorted(set(ids)) if ids is not None else None)
        counts = await _counts(conn, user)
    await engaged(backends.engine, backends.temporal, changes)
    return BulkOut(changed=len(changes), counts=counts)
