"""The inbox's browser side: ``GET /v1/inbox/stream`` (Server-Sent Events), the
``<herald-inbox>`` web component at ``/inbox/herald-inbox.js``, its demo page under
``herald dev`` (``/inbox/demo``), and CORS for the inbox routes by each tenant's origins.

The stream sends ``message.created`` and ``message.updated`` (the message as the feed
lists it) and ``counts`` (``{unseen, unread, total}``), each with ``id`` = the
``inbox_events`` id it follows; a reconnecting ``EventSource`` sends ``Last-Event-ID`` and
gets every event after it from the table, then the live ones, none twice
(``herald/inbox/stream.py`` explains why ids are a gap-free cursor).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from html import escape
from pathlib import Path
from typing import Annotated, Final

import jwt
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import FileResponse, HTMLResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import InboxUserDep
from api.errors import ApiError
from api.schemas.inbox import MessageOut
from herald.inbox.origins import OriginCache
from herald.inbox.store import counts
from herald.inbox.stream import InboxEvent, InboxHub, replay
from herald.inbox.tokens import (
    InboxUser,
    InvalidToken,
    sign,
    tenant_of,
    tenant_secret,
)
from herald.tenants import ensure_tenant

STATIC: Final = Path(__file__).resolve().parents[1] / "inbox"
HEARTBEAT_SECONDS: Final = 15.0
# Where a browser should retry a dropped stream after (EventSource ``retry``), in ms.
RETRY_MS: Final = 2000
DEMO_TENANT: Final = "demo"
_ALLOWED_HEADERS: Final = b"Authorization, Content-Type, Last-Event-ID"

router = APIRouter(tags=["inbox"])


def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.backends.engine
    return engine


def _last_event_id(header: str | None, query: str | None) -> int | None:
    value = header if header not in (None, "") else query
    if value in (None, ""):
        return None
    assert value is not None
    if not value.isascii() or not value.isdigit() or len(value) > 19:
        field, where = ("Last-Event-ID", "header") if header else ("last_event_id", "query")
        raise ApiError(422, "must be an event id (digits)", field=field, where=where)
    return int(value)


@router.get("/v1/inbox/stream", response_class=EventSourceResponse)
async def inbox_stream(
    request: Request,
    user: InboxUserDep,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    last_event_id: Annotated[
        str | None, Query(max_length=32, description="Resume after this event id")
    ] = None,
) -> EventSourceResponse:
    """The user's inbox changes as Server-Sent Events, resuming after ``Last-Event-ID``
    (the user token comes as ``?token=``: ``EventSource`` cannot send headers)."""
    after = _last_event_id(last_event_id_header, last_event_id)
    hub: InboxHub = request.app.state.inbox_hub
    try:
        await asyncio.wait_for(hub.ready.wait(), 10)
    except TimeoutError:
        raise ApiError(
            503, "the inbox stream is not ready; retry", headers={"Retry-After": "2"}
        ) from None
    return EventSourceResponse(
        _events(request, hub, user, after, _expiry(request)),
        ping=HEARTBEAT_SECONDS,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _expiry(request: Request) -> float:
    """When the request's (already verified) user token expires, as a Unix time."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        token = request.query_params.get("token", "")
    claims = jwt.decode(token.strip(), options={"verify_signature": False})
    return float(claims["exp"])


_MESSAGES = text(
    """
    SELECT id, notification_id, title, body, action_url, category, created_at, seen_at,
           read_at, archived_at
    FROM inbox_messages
    WHERE id = ANY(:ids) AND tenant = :tenant AND user_id = :user_id AND test = :test
    """
)


async def _events(
    request: Request,
    hub: InboxHub,
    user: InboxUser,
    after: int | None,
    expires: float,
) -> AsyncIterator[ServerSentEvent]:
    engine = _engine(request)
    subscription = hub.subscribe(user.tenant, user.user_id)
    try:
        last = subscription.start if after is None else after
        backlog: list[InboxEvent] = []
        if last < subscription.start:
            async with engine.connect() as conn:
                backlog = await replay(conn, user.tenant, user.user_id, last, subscription.start)
        batch = backlog
        first = True
        while True:
            fresh = [event for event in batch if event.id > last]
            if fresh or first:
                async with engine.connect() as conn:
                    rows = (
                        await conn.execute(
                            _MESSAGES,
                            {
                                "ids": list({event.message_id for event in fresh}),
                                "tenant": user.tenant,
                                "user_id": user.user_id,
                                "test": user.test,
                            },
                        )
                    ).all()
                    now = await counts(conn, user.tenant, user.user_id, test=user.test)
                messages = {row.id: MessageOut(**row._mapping) for row in rows}
                for event in fresh:
                    message = messages.get(event.message_id)
                    if message is not None:
                        yield ServerSentEvent(
                            message.model_dump_json(), event=event.type, id=str(event.id)
                        )
                    last = event.id
                # Counts as of now, once per batch: the badge shows the newest.
                yield ServerSentEvent(
                    json.dumps(now),
                    event="counts",
                    id=str(max(last, subscription.start)),
                    retry=RETRY_MS if first else None,
                )
                first = False
            if subscription.overflowed:
                return  # too far behind: the client resumes from its Last-Event-ID
            try:
                # The stream ends with its token; the client comes back with a new one.
                left = expires - time.time()
                batch = [await asyncio.wait_for(subscription.queue.get(), max(left, 0))]
            except TimeoutError:
                return
            while not subscription.queue.empty() and len(batch) < 500:
                batch.append(subscription.queue.get_nowait())
    finally:
        hub.unsubscribe(subscription)


@router.get("/inbox/herald-inbox.js", include_in_schema=False)
async def component() -> FileResponse:
    """The ``<herald-inbox>`` web component."""
    return FileResponse(
        STATIC / "herald-inbox.js",
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=300"},
    )


@router.get("/inbox/demo", include_in_schema=False)
async def demo(
    request: Request,
    user: Annotated[str, Query(min_length=1, max_length=200, pattern=r"^[\w.@+-]+$")] = "ada",
) -> HTMLResponse:
    """The component for a user of the ``demo`` tenant, with a fresh token (development
    only: it signs tokens for anyone who asks)."""
    settings = request.app.state.backends.settings
    if settings.env == "production":
        raise ApiError(404, "not found")
    engine = _engine(request)
    tenant = await ensure_tenant(engine, DEMO_TENANT)
    async with engine.begin() as conn:
        secret = await tenant_secret(conn, tenant.id)
    token, _ = sign(secret, InboxUser(tenant.id, user), 3600)
    page = (STATIC / "demo.html").read_text()
    origin = str(request.base_url).rstrip("/")
    for name, value in (("user", user), ("token", token), ("origin", origin)):
        page = page.replace("{{" + name + "}}", escape(value))
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


class InboxCorsMiddleware:
    """CORS for ``/v1/inbox/*`` (not ``/v1/inbox/tokens``, an API-key route a browser
    never calls): an answer is readable by an origin the token's tenant allows; a
    preflight (which carries no token) passes for an origin some tenant allows."""

    def __init__(self, app: ASGIApp, origins: OriginCache | None = None) -> None:
        self.app = app
        self.origins = origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (
            scope["type"] != "http"
            or not path.startswith("/v1/inbox/")
            or path.startswith("/v1/inbox/tokens")
        ):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        cache = self.origins or scope["app"].state.inbox_origins
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            allowed = await cache.allowed(origin, None)
            answer: list[tuple[bytes, bytes]] = [(b"vary", b"Origin")]
            if allowed:
                answer += [
                    (b"access-control-allow-origin", origin.encode("latin-1")),
                    (b"access-control-allow-methods", b"GET, POST"),
                    (
                        b"access-control-allow-headers",
                        b"Authorization, Content-Type, Last-Event-ID",
                    ),
                    (b"access-control-max-age", b"600"),
                ]
            await send({"type": "http.response.start", "status": 204, "headers": answer})
            await send({"type": "http.response.body", "body": b""})
            return
        tenant = _claimed_tenant(headers, scope)
        allowed = tenant is not None and await cache.allowed(origin, tenant)

        async def with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"vary", b"Origin")]
                if allowed:
                    extra.append((b"access-control-allow-origin", origin.encode("latin-1")))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_cors)


def _claimed_tenant(headers: dict[str, str], scope: Scope) -> uuid.UUID | None:
    """The tenant a request's token claims (unverified: it only picks the origins; the
    route verifies the token)."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        from urllib.parse import parse_qs

        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        token = (query.get("token") or [""])[0]
    try:
        return tenant_of(token.strip()) if token else None
    except InvalidToken:
        return None
