"""The append-only status log: every write is keyed, so a retried write is a no-op.

Used by the core worker (every transition), by provider activities (``retrying``)
and by the API (``accepted``, right after the workflow start).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from herald.contracts import NotificationInput, SendRequest, SendResult, Status, StatusEvent
from herald.db import Notification, single_statements

# Append the event once (its key makes a retried write a no-op) ...
_APPEND_EVENT = """
    ev AS (
        INSERT INTO notification_events
            (notification_id, event_key, status, cycle, attempt, provider, detail, at)
        VALUES (:nid, :key, :status, :cycle, :attempt, :provider, :detail, :at)
        ON CONFLICT (notification_id, event_key) DO NOTHING
        RETURNING id
    )
"""
# ... and move the notification's current status only if the event is new.
_MOVE_STATUS = """
    UPDATE notifications SET
        status = :status,
        cycle = GREATEST(cycle, :cycle),
        attempts = CASE WHEN :status = 'accepted' THEN 0 ELSE GREATEST(attempts, :attempt) END,
        provider = COALESCE(:provider, provider),
        provider_message_id = COALESCE(:provider_message_id, provider_message_id),
        template_version = COALESCE(:template_version, template_version),
        last_error = CASE WHEN CAST(:error AS text) IS NOT NULL THEN :error
                          WHEN :status = 'accepted' THEN NULL ELSE last_error END,
        updated_at = :at
    WHERE id = :nid AND NOT :annotation AND EXISTS (SELECT 1 FROM ev)
      AND cycle <= :cycle AND updated_at <= :at
      -- a cycle that has ended stays ended: only a newer cycle moves the status again
      AND (cycle < :cycle
           OR status NOT IN ('sent', 'delivered', 'failed', 'cancelled', 'suppressed'))
"""
_RECORD_EVENT = text(f"WITH {_APPEND_EVENT} {_MOVE_STATUS}")
# The row of a new notification, then its accepted event, in one statement. The row is
# inserted already in its accepted state; for a later cycle it exists, and the update
# moves it (the statement's own insert is invisible to its update, which is fine: a new
# row needs no moving).
_RECORD_ACCEPTED = text(
    f"""
    WITH fresh AS (
        INSERT INTO notifications
            (id, tenant_id, channel, user_id, template, template_version, locale, data,
             send_at, status, cycle, attempts, idempotency_key, request_hash, fallback,
             created_at, updated_at, broadcast_id)
        VALUES (:nid, :tenant_id, :channel, :user_id, :template, :pinned_version, :locale,
                :data, :send_at, :status, :cycle, 0, :idempotency_key, :request_hash,
                :fallback, :at, :at, :broadcast_id)
        ON CONFLICT DO NOTHING
    ), {_APPEND_EVENT} {_MOVE_STATUS}
    """
).bindparams(bindparam("data", type_=JSONB), bindparam("fallback", type_=JSONB))


def _event_params(event: StatusEvent) -> dict[str, Any]:
    return {
        "nid": event.notification_id,
        "key": event.key,
        "status": event.status.value,
        "cycle": event.cycle,
        "attempt": event.attempt,
        "provider": event.provider,
        "provider_message_id": event.provider_message_id,
        "template_version": event.template_version,
        "detail": event.detail or event.error,
        "error": event.error,
        "annotation": event.annotation,
        "at": event.at,
    }


async def record_event(engine: AsyncEngine, event: StatusEvent) -> None:
    """Append ``event`` once and move the notification's current status forward (one
    statement, so it needs no transaction of its own)."""
    async with single_statements(engine) as conn:
        await conn.execute(_RECORD_EVENT, _event_params(event))


async def record_accepted(engine: AsyncEngine, request: NotificationInput) -> None:
    """Create the notification row if it is not there yet, then log ``accepted``.

    The API calls this right after the workflow start and the workflow makes the same
    write in its first step, so a crash between the two never leaves a notification
    without a row.
    """
    async with single_statements(engine) as conn:
        await write_accepted(conn, request)


async def write_accepted(conn: AsyncConnection, request: NotificationInput) -> None:
    """``record_accepted`` on a connection the caller holds (one statement)."""
    accepted = StatusEvent(
        notification_id=request.notification_id,
        status=Status.accepted,
        cycle=request.cycle,
        at=request.created_at,
        detail="resend requested" if request.cycle > 1 else None,
    )
    row = {
        "tenant_id": request.tenant_id,
        "channel": request.channel.value,
        "user_id": request.user_id,
        "template": request.template,
        "pinned_version": request.template_version,
        "locale": request.locale,
        "data": request.data,
        "send_at": request.send_at,
        "idempotency_key": request.idempotency_key,
        "request_hash": request.request_hash,
        "fallback": [channel.value for channel in request.fallback] or None,
        "broadcast_id": request.broadcast_id,
    }
    await conn.execute(_RECORD_ACCEPTED, _event_params(accepted) | row)


# The acceptance a provider gave for one send cycle, as recorded with its ``sent``.
_RECORDED_ACCEPTANCE = select(
    Notification.provider, Notification.provider_message_id, Notification.attempts
).where(
    Notification.id == bindparam("nid"),
    Notification.cycle == bindparam("cycle"),
    Notification.status.in_(("sent", "delivered", "undelivered")),
)


async def recorded_acceptance(engine: AsyncEngine, request: SendRequest) -> SendResult | None:
    """The provider's acceptance of this send cycle if it is already in the log: a retried
    attempt whose predecessor got through (and was recorded) before its worker died uses it
    instead of sending a second copy."""
    async with single_statements(engine) as conn:
        row = (
            await conn.execute(
                _RECORDED_ACCEPTANCE, {"nid": request.notification_id, "cycle": request.cycle}
            )
        ).first()
    if row is None or row.provider is None or row.provider_message_id is None:
        return None
    return SendResult(
        provider=row.provider,
        provider_message_id=row.provider_message_id,
        attempt=row.attempts,
        recorded=True,
    )


# The rows and ``accepted`` events of many new notifications (first cycles), in one
# statement: the bulk form of ``_RECORD_ACCEPTED``. A new row needs no status move, and a
# row its workflow wrote first already has its ``accepted`` event, so both inserts simply
# leave what is there.
_RECORD_ACCEPTED_MANY = text(
    """
    WITH given AS (
        SELECT * FROM jsonb_to_recordset(:rows) AS r(
            nid uuid, tenant_id uuid, channel text, user_id text, template text,
            pinned_version int, locale text, data jsonb, send_at timestamptz,
            idempotency_key text, request_hash text, fallback jsonb, at timestamptz,
            broadcast_id uuid, key text)
    ), fresh AS (
        INSERT INTO notifications
            (id, tenant_id, channel, user_id, template, template_version, locale, data,
             send_at, status, cycle, attempts, idempotency_key, request_hash, fallback,
             created_at, updated_at, broadcast_id)
        SELECT nid, tenant_id, channel, user_id, template, pinned_version, locale,
               COALESCE(data, '{}'::jsonb), send_at, 'accepted', 1, 0, idempotency_key,
               request_hash, fallback, at, at, broadcast_id
        FROM given
        ON CONFLICT DO NOTHING
    )
    INSERT INTO notification_events (notification_id, event_key, status, cycle, attempt, at)
    SELECT nid, key, 'accepted', 1, 0, at FROM given
    ON CONFLICT (notification_id, event_key) DO NOTHING
    """
).bindparams(bindparam("rows", type_=JSONB))


def _accepted_row(request: NotificationInput) -> dict[str, Any]:
    """One notification of ``record_accepted_many`` as JSON for ``jsonb_to_recordset``."""
    accepted = StatusEvent(
        notification_id=request.notification_id, status=Status.accepted, at=request.created_at
    )
    return {
        "nid": str(request.notification_id),
        "tenant_id": str(request.tenant_id),
        "channel": request.channel.value,
        "user_id": request.user_id,
        "template": request.template,
        "pinned_version": request.template_version,
        "locale": request.locale,
        "data": request.data,
        "send_at": request.send_at.isoformat() if request.send_at else None,
        "idempotency_key": request.idempotency_key,
        "request_hash": request.request_hash,
        "fallback": [channel.value for channel in request.fallback] or None,
        "at": request.created_at.isoformat(),
        "broadcast_id": str(request.broadcast_id) if request.broadcast_id else None,
        "key": accepted.key,
    }


async def record_accepted_many(engine: AsyncEngine, requests: Sequence[NotificationInput]) -> None:
    """``record_accepted`` for many new notifications at once: one statement, one round trip.

    Only for first cycles (a resend goes through ``record_accepted``).
    """
    if not requests:
        return
    if any(request.cycle != 1 for request in requests):
        raise ValueError("record_accepted_many records first cycles only")
    async with single_statements(engine) as conn:
        await conn.execute(_RECORD_ACCEPTED_MANY, {"rows": [_accepted_row(r) for r in requests]})
