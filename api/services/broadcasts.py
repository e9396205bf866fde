"""Broadcasts: create one (start its ``BroadcastWorkflow``), read its progress counted
from its recipients' notifications, list them, cancel one.

The REST routes, ``herald broadcast`` and the console use these functions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, RowMapping, and_, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.errors import ApiError, not_found, unprocessable
from api.pagination import NEWEST_FIRST, decode_cursor, encode_cursor
from api.schemas.broadcasts import BroadcastIn, BroadcastOut, BroadcastPage
from herald import broadcasts, intake
from herald.contracts import (
    BroadcastCancel,
    BroadcastDefinition,
    BroadcastInput,
    BroadcastStatus,
    broadcast_workflow_id,
)
from herald.db import Broadcast, Notification, Tenant, Topic
from herald.settings import Settings
from herald.tenants import TenantContext

log = logging.getLogger(__name__)

_BROADCASTS = Broadcast.__table__
# How each notification status counts in a broadcast's progress.
_COUNTED_AS = {
    "sent": "sent",
    "delivered": "sent",
    "undelivered": "failed",
    "failed": "failed",
    "suppressed": "suppressed",
    "cancelled": "cancelled",
}


@dataclass(frozen=True)
class BroadcastBackends:
    """What the broadcast functions need: the API's ``Backends`` has all of it, and the
    CLI makes its own."""

    engine: AsyncEngine
    temporal: Client
    settings: Settings


@dataclass(frozen=True)
class Created:
    """A new broadcast, or (``created`` False) the one an Idempotency-Key named before."""

    broadcast: BroadcastOut
    created: bool


def _fingerprint(body: BroadcastIn) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _visible_to(tenant: TenantContext) -> ColumnElement[bool]:
    """The tenant's broadcasts a key may see: a test key sees only test ones."""
    mine = Broadcast.tenant_id == tenant.id
    return and_(mine, Broadcast.test.is_(True)) if tenant.test else mine


async def _row(engine: AsyncEngine, tenant: TenantContext, broadcast_id: uuid.UUID) -> RowMapping:
    async with engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    select(_BROADCASTS).where(Broadcast.id == broadcast_id, _visible_to(tenant))
                )
            )
            .mappings()
            .first()
        )
    if row is None:
        raise not_found(f"broadcast {broadcast_id}")
    return row


async def _validate(
    engine: AsyncEngine, tenant: TenantContext, body: BroadcastIn
) -> tuple[int, datetime]:
    """The audience's size now; 422 for an unknown template or topic."""
    (problem,) = await intake.template_problems(engine, tenant, [body.request_for("broadcast")])
    if problem is not None:
        raise unprocessable(problem.field, problem.message)
    async with engine.connect() as conn:
        if body.audience.topic is not None:
            found = await conn.execute(
                select(Topic.key).where(
                    Topic.tenant_id == tenant.id, Topic.key == body.audience.topic
                )
            )
            if found.first() is None:
                raise unprocessable(
                    "audience",
                    f"no topic {body.audience.topic!r}; create it with "
                    f"PUT /v1/topics/{body.audience.topic}",
                )
        total = await broadcasts.audience_size(conn, tenant.id, body.audience)
    return total, datetime.now(UTC)


async def create_broadcast(
    backends: BroadcastBackends,
    tenant: TenantContext,
    body: BroadcastIn,
    *,
    idempotency_key: str | None = None,
    request_id: str | None = None,
) -> Created:
    """Start the broadcast's workflow durably, then write its row (the workflow writes the
    same row as its first step, so a crash in between loses nothing)."""
    engine, settings = backends.engine, backends.settings
    fingerprint = _fingerprint(body)
    if idempotency_key is not None:
        broadcast_id = intake.idempotent_id(tenant, f"broadcast:{idempotency_key}")
        replay = await _replay(engine, tenant, broadcast_id, fingerprint)
        if replay is not None:
            return replay
    else:
        broadcast_id = uuid.uuid4()
    total, now = await _validate(engine, tenant, body)
    rate = body.rate_per_second or settings.broadcast_rate_per_second
    definition = BroadcastDefinition(
        broadcast_id=broadcast_id,
        tenant_id=tenant.id,
        channel=body.channel,
        template=body.template,
        locale=body.locale,
        data=body.data,
        fallback=body.fallback,
        audience=body.audience,
        send_at=body.send_at,
        rate_per_second=rate,
        total=total,
        request_hash=fingerprint,
        created_at=now,
        test=tenant.test,
    )
    job = BroadcastInput(
        broadcast_id=broadcast_id,
        tenant_id=tenant.id,
        tenant=tenant.name,
        channel=body.channel,
        template=body.template,
        send_at=body.send_at,
        rate_per_second=rate,
        page_size=min(settings.broadcast_page_size, max(1, int(rate))),
        request_id=request_id,
        definition=definition,
    )
    started = await broadcasts.start_broadcast(backends.temporal, settings, job)
    try:
        await broadcasts.write_broadcast(engine, definition)
    except Exception:
        log.warning(
            "accepted broadcast not yet recorded; its workflow will record it",
            extra={"broadcast_id": str(broadcast_id)},
            exc_info=True,
        )
    if not started:  # the same Idempotency-Key raced us
        replay = await _replay(engine, tenant, broadcast_id, fingerprint)
        if replay is not None:
            return replay
    log.info(
        "broadcast accepted",
        extra={"broadcast_id": str(broadcast_id), "tenant": tenant.name, "total": total},
    )
    return Created(await get_broadcast(engine, tenant, broadcast_id), created=True)


async def _replay(
    engine: AsyncEngine, tenant: TenantContext, broadcast_id: uuid.UUID, fingerprint: str
) -> Created | None:
    try:
        row = await _row(engine, tenant, broadcast_id)
    except ApiError:
        return None
    if row["request_hash"] != fingerprint:
        raise ApiError(409, "Idempotency-Key was already used with a different request body")
    return Created(await _with_counts(engine, row), created=False)


async def _counts(engine: AsyncEngine, broadcast_id: uuid.UUID) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(Notification.status, func.count())
            .where(Notification.broadcast_id == broadcast_id)
            .group_by(Notification.status)
        )
        by_status = {status: count for status, count in rows}
    counts = dict.fromkeys(("sent", "failed", "suppressed", "cancelled", "in_flight"), 0)
    for status, count in by_status.items():
        counts[_COUNTED_AS.get(status, "in_flight")] += count
    counts["started"] = sum(by_status.values())
    return counts


def _audience_view(audience: dict[str, Any]) -> dict[str, Any]:
    if "user_ids" in audience:
        return {"user_ids_count": len(set(audience["user_ids"]))}
    return audience


async def _with_counts(engine: AsyncEngine, row: RowMapping) -> BroadcastOut:
    return BroadcastOut.model_validate(
        dict(row) | {"audience": _audience_view(row["audience"])} | await _counts(engine, row["id"])
    )


async def get_broadcast(
    engine: AsyncEngine, tenant: TenantContext, broadcast_id: uuid.UUID
) -> BroadcastOut:
    """The broadcast with its progress: ``started`` and the outcomes add up (see
    ``BroadcastOut``)."""
    return await _with_counts(engine, await _row(engine, tenant, broadcast_id))


async def list_broadcasts(
    engine: AsyncEngine,
    tenant: TenantContext,
    *,
    status: BroadcastStatus | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> BroadcastPage:
    """The tenant's broadcasts, newest first, each with its progress."""
    query = select(_BROADCASTS).where(_visible_to(tenant))
    if status is not None:
        query = query.where(Broadcast.status == status.value)
    if cursor is not None:
        query = query.where(
            tuple_(Broadcast.created_at, Broadcast.id)
            < tuple_(*decode_cursor(cursor, *NEWEST_FIRST))
        )
    query = query.order_by(Broadcast.created_at.desc(), Broadcast.id.desc()).limit(limit + 1)
    async with engine.connect() as conn:
        rows = list((await conn.execute(query)).mappings())
    items = [await _with_counts(engine, row) for row in rows[:limit]]
    more = len(rows) > limit
    return BroadcastPage(
        items=items, next_cursor=encode_cursor(items[-1].created_at, items[-1].id) if more else None
    )


async def cancel_broadcast(
    backends: BroadcastBackends, tenant: TenantContext, broadcast_id: uuid.UUID
) -> BroadcastOut:
    """Start no more of its recipients (those started finish); 409 once it has ended.

    The request is written to PostgreSQL first, where the next page of the fan-out looks
    before starting anyone, then signalled, so a workflow waiting for ``send_at`` or
    between pages stops at once.
    """
    engine = backends.engine
    async with engine.begin() as conn:
        updated = await conn.execute(
            update(Broadcast)
            .where(
                Broadcast.id == broadcast_id,
                _visible_to(tenant),
                Broadcast.status == BroadcastStatus.running.value,
            )
            .values(cancel_requested_at=func.coalesce(Broadcast.cancel_requested_at, func.now()))
        )
    if not updated.rowcount:
        row = await _row(engine, tenant, broadcast_id)
        raise ApiError(409, f"broadcast is already {row['status']}; nothing to cancel")
    handle = backends.temporal.get_workflow_handle(broadcast_workflow_id(broadcast_id))
    try:
        await handle.signal("cancel", BroadcastCancel())
    except RPCError as err:
        if err.status is not RPCStatusCode.NOT_FOUND:
            raise
        # Already finished: it has recorded how it ended, or is about to.
    return await get_broadcast(engine, tenant, broadcast_id)


async def tenant_of(engine: AsyncEngine, broadcast_id: uuid.UUID) -> TenantContext | None:
    """The tenant a broadcast belongs to (for operators, who name a broadcast by id)."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(Tenant.id, Tenant.name)
                .join(Broadcast, Broadcast.tenant_id == Tenant.id)
                .where(Broadcast.id == broadcast_id)
            )
        ).first()
    return TenantContext(row.id, row.name) if row else None
