"""Submitting, reading, cancelling and resending notifications."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from urllib.parse import quote

from sqlalchemy import ColumnElement, RowMapping, and_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.service import RPCError, RPCStatusCode

from api.backends import Backends
from api.context import request_id_var
from api.errors import ApiError, not_found, unprocessable
from api.pagination import NEWEST_FIRST, decode_cursor, encode_cursor
from api.schemas.notifications import EventOut, NotificationOut, NotificationPage
from herald import digests
from herald.contracts import (
    CancelRequest,
    Channel,
    NotificationInput,
    NotificationRequest,
    Status,
    workflow_id_for,
)
from herald.db import Notification, NotificationEvent
from herald.intake import Accepted, Conflict, Invalid, Outcome, Replayed, Submission, Unstarted
from herald.settings import Settings
from herald.tenants import TenantContext

log = logging.getLogger(__name__)

_NOTIFICATIONS = Notification.__table__


@dataclass(frozen=True)
class Submitted:
    """A submission's outcome: ``created`` is False when an Idempotency-Key replayed it."""

    notification: NotificationOut
    created: bool


def _out(row: RowMapping) -> NotificationOut:
    return NotificationOut.model_validate(digests.notification_view(row))


def visible_to(tenant: TenantContext) -> ColumnElement[bool]:
    """The tenant's notifications a key may see: a test key sees only test ones."""
    mine = Notification.tenant_id == tenant.id
    return and_(mine, Notification.test.is_(True)) if tenant.test else mine


async def _row(
    engine: AsyncEngine, tenant: TenantContext, notification_id: uuid.UUID
) -> RowMapping | None:
    async with engine.connect() as conn:
        return (
            (
                await conn.execute(
                    digests.notifications_select().where(
                        Notification.id == notification_id, visible_to(tenant)
                    )
                )
            )
            .mappings()
            .first()
        )


def _accepted_view(notification: NotificationInput) -> NotificationOut:
    return NotificationOut(
        id=notification.notification_id,
        channel=notification.channel,
        user_id=notification.user_id,
        template=notification.template,
        template_version=None,
        status=Status.accepted,
        attempts=0,
        provider=None,
        provider_message_id=None,
        last_error=None,
        created_at=notification.created_at,
        updated_at=notification.created_at,
        send_at=notification.send_at,
        fallback=notification.fallback,
        test=notification.test,
    )


async def submit(
    backends: Backends,
    tenant: TenantContext,
    request: NotificationRequest,
    *,
    idempotency_key: str | None,
    request_id: str | None,
) -> Submitted:
    """Accept one request through the intake; 503 with ``Retry-After`` when the process
    is already starting as many as it may (a replay of an Idempotency-Key starts nothing
    and is answered regardless)."""
    outcome = await backends.intake.accept_one(
        tenant, Submission(request, idempotency_key=idempotency_key), request_id=request_id
    )
    return await answer(backends.engine, tenant, outcome)


async def answer(engine: AsyncEngine, tenant: TenantContext, outcome: Outcome) -> Submitted:
    """The REST answer to one intake outcome: the notification, or the error to raise."""
    match outcome:
        case Accepted(notification=notification):
            return Submitted(_accepted_view(notification), created=True)
        case Replayed(notification_id=notification_id):
            return Submitted(await get_notification(engine, tenant, notification_id), False)
        case Conflict(message=message):
            raise ApiError(409, message)
        case Invalid(field=field, message=message):
            raise unprocessable(field, message)
        case Unstarted(error=error):
            raise error
    raise AssertionError(f"unknown intake outcome {outcome!r}")


async def get_notification(
    engine: AsyncEngine, tenant: TenantContext, notification_id: uuid.UUID
) -> NotificationOut:
    """One notification of this tenant."""
    row = await _row(engine, tenant, notification_id)
    if row is None:
        raise not_found(f"notification {notification_id}")
    return _out(row)


async def list_events(
    engine: AsyncEngine, tenant: TenantContext, notification_id: uuid.UUID
) -> list[EventOut]:
    """The append-only log, oldest first."""
    await get_notification(engine, tenant, notification_id)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    NotificationEvent.status,
                    NotificationEvent.attempt,
                    NotificationEvent.at,
                    NotificationEvent.detail,
                    NotificationEvent.provider,
                    NotificationEvent.cycle,
                )
                .where(NotificationEvent.notification_id == notification_id)
                .order_by(NotificationEvent.at, NotificationEvent.id)
            )
        ).mappings()
        return [EventOut.model_validate(dict(row)) for row in rows]


async def list_notifications(
    engine: AsyncEngine,
    tenant: TenantContext,
    *,
    status: Status | None,
    channel: Channel | None,
    user_id: str | None,
    limit: int,
    cursor: str | None,
    template: str | None = None,
    broadcast_id: uuid.UUID | None = None,
    error_prefix: str | None = None,
) -> NotificationPage:
    """Newest first, filtered, one page at a time."""
    query = digests.notifications_select().where(visible_to(tenant))
    if template is not None:
        query = query.where(Notification.template == template)
    if broadcast_id is not None:
        query = query.where(Notification.broadcast_id == broadcast_id)
    if status is not None:
        query = query.where(Notification.status == status.value)
    if channel is not None:
        query = query.where(Notification.channel == channel.value)
    if user_id is not None:
        query = query.where(Notification.user_id == user_id)
    if error_prefix is not None:
        query = query.where(Notification.last_error.startswith(error_prefix, autoescape=True))
    if cursor is not None:
        created_at, last_id = decode_cursor(cursor, *NEWEST_FIRST)
        query = query.where(
            tuple_(Notification.created_at, Notification.id) < tuple_(created_at, last_id)
        )
    query = query.order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit + 1)
    async with engine.connect() as conn:
        rows = [_out(row) for row in (await conn.execute(query)).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return NotificationPage(
        items=rows, next_cursor=encode_cursor(rows[-1].created_at, rows[-1].id) if more else None
    )


async def cancel(
    backends: Backends, tenant: TenantContext, notification_id: uuid.UUID
) -> NotificationOut:
    """Ask the workflow to stop; a notification that already ended is a 409."""
    current = await get_notification(backends.engine, tenant, notification_id)
    if current.status.terminal:
        raise ApiError(409, f"notification is already {current.status.value}; nothing to cancel")
    if current.digest_id is not None:
        raise ApiError(
            409, f"notification is part of digest {current.digest_id}; it is sent with it"
        )
    handle = backends.temporal.get_workflow_handle(workflow_id_for(notification_id))
    try:
        await handle.signal("cancel", CancelRequest())
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            raise ApiError(409, "notification has already finished; nothing to cancel") from err
        raise
    return current


async def resend(
    backends: Backends, tenant: TenantContext, notification_id: uuid.UUID
) -> NotificationOut:
    """Start a new send cycle of a notification that has ended."""
    row = await _row(backends.engine, tenant, notification_id)
    if row is None:
        raise not_found(f"notification {notification_id}")
    if row["digest_id"] is not None:
        raise ApiError(
            409, f"notification is part of digest {row['digest_id']}; it is sent with it"
        )
    if not Status(row["status"]).terminal:
        raise ApiError(409, f"notification is still {row['status']}; resend it once it has ended")
    notification = await backends.intake.resend(
        row, tenant=tenant.name, request_id=request_id_var.get()
    )
    return _accepted_view(notification).model_copy(update={"cycle": notification.cycle})


def temporal_ui_url(settings: Settings, notification_id: uuid.UUID) -> str:
    """Where the notification's workflow is in the Temporal UI."""
    return (
        f"{settings.temporal_ui_url.rstrip('/')}/namespaces/"
        f"{quote(settings.temporal_namespace)}/workflows/{workflow_id_for(notification_id)}"
    )
