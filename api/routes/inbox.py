"""``/v1/inbox``: user tokens (by API key) and the user's feed (by user token only)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from api.deps import BackendsDep, InboxUserDep, SendTenantDep
from api.schemas.inbox import BulkIn, BulkOut, MessageChanged, MessagePage, TokenIn, TokenOut
from api.services import inbox

router = APIRouter(prefix="/v1/inbox", tags=["inbox"])


@router.post("/tokens", status_code=201)
async def issue_token(body: TokenIn, backends: BackendsDep, tenant: SendTenantDep) -> TokenOut:
    """A short-lived token for one user's inbox, for that user's browser. A test key's
    token shows the user's test inbox (its test notifications) only."""
    return await inbox.issue_token(backends, tenant, body.user_id, body.ttl_seconds)


@router.get("/messages")
async def list_messages(
    backends: BackendsDep,
    user: InboxUserDep,
    filter: Annotated[Literal["unread", "unseen", "all"], Query()] = "all",
    archived: Annotated[bool, Query(description="true: the archived messages instead")] = False,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> MessagePage:
    """The user's messages, newest first, with the inbox's counts."""
    return await inbox.list_messages(backends, user, filter, archived, cursor, limit)


@router.post("/messages/bulk")
async def bulk(body: BulkIn, backends: BackendsDep, user: InboxUserDep) -> BulkOut:
    """``seen``, ``read`` or ``archive`` on the messages named (the user's), or on all."""
    return await inbox.bulk(backends, user, body.action, body.ids)


@router.post("/messages/{message_id}/{action}")
async def act(
    message_id: uuid.UUID,
    action: Annotated[Literal["seen", "read", "unread", "archive", "unarchive"], Path()],
    backends: BackendsDep,
    user: InboxUserDep,
) -> MessageChanged:
    """One action on one message; doing it again changes nothing."""
    return await inbox.act(backends, user, message_id, action)
