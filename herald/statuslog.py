"""The append-only status log: every write is keyed, so a retried write is a no-op.

Used by the core worker (every transition), by provider activities (``retrying``)
and by the API (``accepted``, right after the workflow start).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from herald.contracts import (
    NotificationInput,
    Receipt,
    SendRequest,
    SendResult,
    Status,
    StatusEvent,
)
from herald.db import Notification, single_statements
from herald.metrics import RECEIPT_CHANGES

# Append the event once (its key makes a retried write a no-op) ...
_APPEND_EVENT = """
    ev AS (
        INSERT INTO notification_events
            (notification_id, event_key, status, cycle, attempt, provider, detail, at)
        VALUES (:nid, :key, :status, :cycle, :attempt, :provider, :detail, :at)
        ON CONFLICT (notification_id, event_key) DO NOTHING
        RETURNING id, status, notification_id
    )
"""
# ... and move the notification's current status only if the event is new. ``sent``
# takes a delivery receipt of its cycle that arrived first into account ({receipt_*}).
_MOVE_STATUS = """
    UPDATE notifications SET
        status = CASE WHEN :status = 'sent' THEN COALESCE({receipt_status}, 'sent')
                      ELSE :status END,
        cycle = GREATEST(cycle, :cycle),
        leg = CASE WHEN cycle < :cycle THEN :leg ELSE GREATEST(leg, :leg) END,
        attempts = CASE WHEN :status = 'accepted' THEN 0 ELSE GREATEST(attempts, :attempt) END,
        provider = COALESCE(:provider, provider),
        provider_message_id = COALESCE(:provider_message_id, provider_message_id),
        template_version = COALESCE(:template_version, template_version),
        last_error = CASE WHEN :status = 'sent' AND {receipt_status} = 'undelivered'
                               THEN {receipt_error}
                          WHEN :status = 'sent' AND {receipt_status} = 'delivered' THEN NULL
                          WHEN CAST(:error AS text) IS NOT NULL THEN :error
                          WHEN :status = 'accepted' THEN NULL ELSE last_error END,
        {receipt_columns}
        updated_at = :at
    {receipt_from}
    WHERE id = :nid AND NOT :annotation AND EXISTS (SELECT 1 FROM ev)
      AND cycle <= :cycle AND updated_at <= :at
      -- a cycle that has ended stays ended: only a newer cycle, or the next fallback
      -- channel after a send that was never confirmed, moves the status again
      AND (cycle < :cycle OR (cycle = :cycle AND leg < :leg)
           OR status NOT IN ('sent', 'delivered', 'undelivered', 'failed', 'cancelled',
                             'suppressed'))
"""
# The receipt of this cycle kept on the row, if one came before ``sent``.
_ROW_RECEIPT = {
    "receipt_status": "(CASE WHEN receipt_cycle = :cycle THEN receipt_status END)",
    "receipt_error": "(CASE WHEN receipt_cycle = :cycle THEN receipt_error END)",
    "receipt_columns": "",
    "receipt_from": "",
}
# Every new status event is offered to the tenant's webhook endpoints that want it, in
# the same statement: an event is never logged without its webhooks, nor the reverse.
_ENQUEUE_WEBHOOKS = """
    hooks AS (
        INSERT INTO webhook_messages (endpoint_id, event_id, next_attempt_at)
        SELECT endpoint.id, new_event.id, now()
        FROM {new_events} AS new_event
        {owner_join}
        JOIN webhook_endpoints endpoint ON endpoint.tenant_id = {tenant}
        WHERE NOT :annotation AND endpoint.disabled_at IS NULL
          AND endpoint.events && ARRAY['*', new_event.status]::varchar[]
        ON CONFLICT DO NOTHING
    )
"""
_OWNER = {
    "owner_join": "JOIN notifications owner ON owner.id = new_event.notification_id",
    "tenant": "owner.tenant_id",
}
# What a status move returns: the status it wrote (``sent`` may become the status of a
# receipt that came first) and the channel.
_MOVED = " RETURNING status, channel"
_RECORD_EVENT = text(
    f"WITH {_APPEND_EVENT}, {_ENQUEUE_WEBHOOKS.format(new_events='ev', **_OWNER)} "
    + _MOVE_STATUS.format(**_ROW_RECEIPT)
    + _MOVED
)
# The same, saying whether the event is new (a step run again finds its own event).
_RECORD_NEW_EVENT = text(
    f"WITH {_APPEND_EVENT}, {_ENQUEUE_WEBHOOKS.format(new_events='ev', **_OWNER)}, "
    f"moved AS ({_MOVE_STATUS.format(**_ROW_RECEIPT)} RETURNING 1) SELECT count(*) FROM ev"
)
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
             created_at, updated_at, test, confirm_within_seconds, broadcast_id)
        VALUES (:nid, :tenant_id, :channel, :user_id, :template, :pinned_version, :locale,
                :data, :send_at, :status, :cycle, 0, :idempotency_key, :request_hash,
                :fallback, :at, :at, :test, :confirm_within_seconds, :broadcast_id)
        ON CONFLICT DO NOTHING
    ), {_APPEND_EVENT},
    {_ENQUEUE_WEBHOOKS.format(new_events="ev", owner_join="", tenant="CAST(:tenant_id AS uuid)")}
    {_MOVE_STATUS.format(**_ROW_RECEIPT)}
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
        "leg": event.leg,
    }


async def record_event(engine: AsyncEngine, event: StatusEvent) -> None:
    """Append ``event`` once and move the notification's current status forward (one
    statement, so it needs no transaction of its own)."""
    statement = _RECORD_EVENT
    if (
        event.status is Status.sent
        and event.provider_message_id is not None
        and reports_by_message_id(event.provider)
    ):
        statement = _RECORD_SENT_FOR_RECEIPTS
    async with single_statements(engine) as conn:
        moved = (await conn.execute(statement, _event_params(event))).first()
    if moved is not None and event.status is Status.sent and moved.status != Status.sent.value:
        # A receipt that came before ``sent`` decided the status as it was written.
        count_receipt_change(moved.channel, Status.sent.value, moved.status)


async def record_new_event(engine: AsyncEngine, event: StatusEvent) -> bool:
    """``record_event``, and whether the event was new: False means it was written
    before, by an earlier run of the same step."""
    async with single_statements(engine) as conn:
        written = (await conn.execute(_RECORD_NEW_EVENT, _event_params(event))).scalar_one()
    return bool(written)


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
        "test": request.test,
        "confirm_within_seconds": request.confirm_within_seconds,
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


# --- Delivery receipts ---------------------------------------------------------------
#
# A receipt says what became of a message after ``sent``: ``delivered`` or
# ``undelivered``. Receipts can arrive twice, out of order, or before Herald has recorded
# ``sent`` at all; the rule that makes the outcome independent of that order lives here,
# in SQL, so it holds across processes:
#
# - Each receipt is an event in the log (keyed by cycle, source and report: the same
#   report twice is logged once).
# - The strongest receipt of the cycle is kept on the notification's row
#   (``receipt_*``): ``delivered`` beats ``undelivered``, and of two of a kind the later
#   report wins (``herald_receipt_outranks``, created by migration 0003).
# - A notification already ``sent`` (or with a receipt) takes the strongest receipt's
#   status at once; one still on its way keeps its status until ``sent`` is recorded,
#   and the ``sent`` write then takes the kept receipt's status instead.
#
# Both writers update the same row, so PostgreSQL's row lock orders them and the later
# one sees what the earlier one wrote. Receipts that name only the provider's message id
# (Twilio) meet the ``sent`` write on ``provider_messages`` the same way: whichever comes
# second finds the other's half there.

# Providers whose receipts name their own message id rather than ours.
_RECEIPTS_BY_MESSAGE_ID = ("twilio",)


def reports_by_message_id(provider: str | None) -> bool:
    """Whether this provider's receipts name its message id (so ``sent`` must link it)."""
    return provider is not None and provider.split("-", 1)[0] in _RECEIPTS_BY_MESSAGE_ID


_SENT_ALREADY = "status IN ('sent', 'delivered', 'undelivered')"


def _wins(cycle: str) -> str:
    """SQL: the receipt in the parameters outranks the one the row keeps for ``cycle``."""
    return (
        "herald_receipt_outranks(CAST(:r_status AS text), CAST(:r_at AS timestamptz), "
        f"CASE WHEN receipt_cycle = {cycle} THEN receipt_status END, receipt_at)"
    )


def _locked_row(rows: str = "", on: str = "") -> str:
    """SQL: the ``before`` CTE, the notification a receipt is for as it is before the
    receipt, row-locked so that the update that follows sees the same version (its status
    then is what the receipt moved the status from)."""
    where = on or "n.id = CAST(:nid AS uuid) AND n.cycle = CAST(:cycle AS integer)"
    return f"""
    before AS (
        SELECT n.id AS b_id, n.cycle AS b_cycle, n.status AS b_status, n.channel AS b_channel
        FROM notifications n {rows}
        WHERE {where}
        FOR UPDATE OF n
    )
    """


def _apply_receipt(source: str = "FROM before") -> str:
    """SQL: keep the receipt in the parameters on the locked row (``before``) if it is the
    strongest of its cycle so far, and move the status if the cycle was already sent.
    Returns the status before and after, and the channel."""
    cycle = "before.b_cycle"
    wins = _wins(cycle)
    moves = f"({_SENT_ALREADY} AND {wins})"
    return f"""
    UPDATE notifications SET
        receipt_cycle = CASE WHEN {wins} THEN {cycle} ELSE receipt_cycle END,
        receipt_status = CASE WHEN {wins} THEN :r_status ELSE receipt_status END,
        receipt_error = CASE WHEN {wins} THEN :r_error ELSE receipt_error END,
        receipt_at = CASE WHEN {wins} THEN :r_at ELSE receipt_at END,
        status = CASE WHEN {moves} THEN :r_status ELSE status END,
        last_error = CASE WHEN {moves} AND :r_status = 'undelivered' THEN :r_error
                          WHEN {moves} THEN NULL ELSE last_error END,
        updated_at = CASE WHEN {moves} THEN GREATEST(updated_at, :r_at) ELSE updated_at END
    {source}
    WHERE id = before.b_id AND cycle = {cycle}
    RETURNING id, before.b_status AS old_status, status AS new_status,
              before.b_channel AS channel
    """


def _receipt_event(nid: str, cycle: str, rows: str) -> str:
    """SQL: the receipt's event in the log (``:r_status`` None: a report logged only)."""
    return f"""
    ev AS (
        INSERT INTO notification_events
            (notification_id, event_key, status, cycle, attempt, provider, detail, at)
        SELECT {nid}, CAST({cycle} AS text) || CAST(:key_suffix AS text),
               COALESCE(CAST(:r_status AS varchar), 'sent'), {cycle}, 0,
               CAST(:source AS varchar), CAST(:detail AS text), CAST(:r_at AS timestamptz)
        FROM {rows}
        ON CONFLICT (notification_id, event_key) DO NOTHING
        RETURNING id, status, notification_id
    )
    """


# A receipt for a notification named by its id (email bounce, the client's own report).
_RECORD_RECEIPT = text(
    "WITH "
    + _locked_row()
    + ", "
    + _receipt_event("CAST(:nid AS uuid)", "CAST(:cycle AS integer)", "(SELECT 1) AS one")
    + ", "
    + _ENQUEUE_WEBHOOKS.format(new_events="ev", **_OWNER)
    + ", moved AS ("
    + _apply_receipt()
    + ") SELECT (SELECT count(*) FROM ev) AS logged, old_status, new_status, channel"
    " FROM (SELECT 1) AS one LEFT JOIN moved ON true"
)

# A report that changes nothing but the log (Twilio ``queued``, a delayed email).
_RECORD_REPORT = text(
    "WITH "
    + _receipt_event("CAST(:nid AS uuid)", "CAST(:cycle AS integer)", "(SELECT 1) AS one")
    + " SELECT count(*) AS logged FROM ev"
)

# A receipt naming the provider's message id. The upsert meets the ``sent`` write's on
# the message id's row: if ``sent`` is there, the receipt applies to its notification at
# once; if not, it waits on that row for the ``sent`` write to apply it.
_RECORD_MESSAGE_RECEIPT = text(
    """
    WITH link AS (
        INSERT INTO provider_messages AS pm
            (provider_message_id, receipt_status, receipt_report, receipt_error,
             receipt_detail, receipt_at)
        VALUES (:pmid, :r_status, :report_key, :r_error, :detail, :r_at)
        ON CONFLICT (provider_message_id) DO UPDATE SET
            receipt_status = CASE WHEN {wins} THEN EXCLUDED.receipt_status
                                  ELSE pm.receipt_status END,
            receipt_report = CASE WHEN {wins} THEN EXCLUDED.receipt_report
                                  ELSE pm.receipt_report END,
            receipt_error = CASE WHEN {wins} THEN EXCLUDED.receipt_error
                                 ELSE pm.receipt_error END,
            receipt_detail = CASE WHEN {wins} THEN EXCLUDED.receipt_detail
                                  ELSE pm.receipt_detail END,
            receipt_at = CASE WHEN {wins} THEN EXCLUDED.receipt_at ELSE pm.receipt_at END
        RETURNING notification_id AS l_nid, cycle AS l_cycle
    ), {before}, {event}, {hooks}, moved AS ({apply})
    SELECT l_nid, l_cycle, old_status, new_status, channel
    FROM link LEFT JOIN moved ON moved.id = link.l_nid
    """.format(
        wins="herald_receipt_outranks(EXCLUDED.receipt_status, EXCLUDED.receipt_at, "
        "pm.receipt_status, pm.receipt_at)",
        event=_receipt_event("link.l_nid", "link.l_cycle", "link WHERE link.l_nid IS NOT NULL"),
        hooks=_ENQUEUE_WEBHOOKS.format(new_events="ev", **_OWNER),
        before=_locked_row("JOIN link ON n.id = link.l_nid", "n.cycle = link.l_cycle"),
        apply=_apply_receipt("FROM before"),
    )
)

# A report logged only, naming the provider's message id: logged if ``sent`` linked it.
_RECORD_MESSAGE_REPORT = text(
    "WITH link AS (SELECT notification_id AS l_nid, cycle AS l_cycle FROM provider_messages"
    " WHERE provider_message_id = :pmid AND notification_id IS NOT NULL), "
    + _receipt_event("link.l_nid", "link.l_cycle", "link")
    + " SELECT l_nid, l_cycle FROM link"
)

# ``sent`` from a provider that reports by message id: link the id to this send cycle
# and take over a receipt that arrived before (logging it, and offering it to webhooks).
_LINK_RECEIPT = {
    "receipt_status": (
        "(CASE WHEN herald_receipt_outranks(link.l_status, link.l_at, "
        "CASE WHEN receipt_cycle = :cycle THEN receipt_status END, receipt_at) "
        "THEN link.l_status ELSE CASE WHEN receipt_cycle = :cycle THEN receipt_status END END)"
    ),
    "receipt_error": (
        "(CASE WHEN herald_receipt_outranks(link.l_status, link.l_at, "
        "CASE WHEN receipt_cycle = :cycle THEN receipt_status END, receipt_at) "
        "THEN link.l_error ELSE CASE WHEN receipt_cycle = :cycle THEN receipt_error END END)"
    ),
    "receipt_columns": "\n".join(
        f"{column} = CASE WHEN herald_receipt_outranks(link.l_status, link.l_at, "
        "CASE WHEN receipt_cycle = :cycle THEN receipt_status END, receipt_at) "
        f"THEN {value} ELSE {column} END,"
        for column, value in (
            ("receipt_cycle", ":cycle"),
            ("receipt_status", "link.l_status"),
            ("receipt_error", "link.l_error"),
            ("receipt_at", "link.l_at"),
        )
    ),
    "receipt_from": "FROM link",
}
_RECORD_SENT_FOR_RECEIPTS = text(
    f"""
    WITH link AS (
        INSERT INTO provider_messages AS pm (provider_message_id, notification_id, cycle)
        VALUES (:provider_message_id, :nid, :cycle)
        ON CONFLICT (provider_message_id) DO UPDATE SET
            notification_id = EXCLUDED.notification_id, cycle = EXCLUDED.cycle
        RETURNING receipt_status AS l_status, receipt_report AS l_report,
                  receipt_error AS l_error, receipt_detail AS l_detail, receipt_at AS l_at
    ), {_APPEND_EVENT},
    early AS (
        INSERT INTO notification_events
            (notification_id, event_key, status, cycle, attempt, provider, detail, at)
        SELECT CAST(:nid AS uuid), CAST(CAST(:cycle AS integer) AS text) || ':receipt:'
                   || link.l_report,
               link.l_status, :cycle, 0, split_part(link.l_report, ':', 1), link.l_detail,
               link.l_at
        FROM link WHERE link.l_status IS NOT NULL
        ON CONFLICT (notification_id, event_key) DO NOTHING
        RETURNING id, status, notification_id
    ),
    {
        _ENQUEUE_WEBHOOKS.format(
            new_events="(SELECT * FROM ev UNION ALL SELECT * FROM early)", **_OWNER
        )
    }
    {_MOVE_STATUS.format(**_LINK_RECEIPT)}
    """
    + _MOVED
)


def _receipt_params(receipt: Receipt) -> dict[str, Any]:
    return {
        "r_status": receipt.status.value if receipt.status is not None else None,
        "r_at": receipt.at,
        "r_error": receipt.error,
        "report_key": receipt.report_key,
        "key_suffix": receipt.key_suffix,
        "source": receipt.source,
        "detail": receipt.detail,
        "annotation": False,
    }


def count_receipt_change(channel: str | None, old: str | None, new: str | None) -> None:
    """Count a receipt that moved a notification's status (``herald_receipt_changes_total``):
    a report that was already applied, or that an earlier stronger one outranks, moves
    nothing and is not counted, so replays never count twice."""
    if channel is not None and old is not None and new is not None and old != new:
        RECEIPT_CHANGES.labels(channel=channel, from_status=old, to_status=new).inc()


async def record_receipt(
    engine: AsyncEngine, notification_id: uuid.UUID, cycle: int, receipt: Receipt
) -> bool:
    """Log a receipt of send cycle ``cycle`` and apply it (see above); False if this
    report was already logged."""
    statement = _RECORD_RECEIPT if receipt.status is not None else _RECORD_REPORT
    params = _receipt_params(receipt) | {"nid": notification_id, "cycle": cycle}
    async with single_statements(engine) as conn:
        row = (await conn.execute(statement, params)).one()
    if receipt.status is not None:
        count_receipt_change(row.channel, row.old_status, row.new_status)
    return bool(row.logged)


async def record_message_receipt(
    engine: AsyncEngine, provider_message_id: str, receipt: Receipt
) -> tuple[uuid.UUID, int] | None:
    """Log and apply a receipt that names the provider's message id; the notification and
    cycle it belongs to, or None while ``sent`` has not linked the id (a receipt then
    waits for it; a report that changes no status is dropped)."""
    statement = _RECORD_MESSAGE_RECEIPT if receipt.status is not None else _RECORD_MESSAGE_REPORT
    params = _receipt_params(receipt) | {"pmid": provider_message_id}
    async with single_statements(engine) as conn:
        row = (await conn.execute(statement, params)).first()
    if row is None or row.l_nid is None:
        return None
    if receipt.status is not None:
        count_receipt_change(row.channel, row.old_status, row.new_status)
    return row.l_nid, row.l_cycle


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
            broadcast_id uuid, key text, test boolean, confirm_within_seconds float8)
    ), fresh AS (
        INSERT INTO notifications
            (id, tenant_id, channel, user_id, template, template_version, locale, data,
             send_at, status, cycle, attempts, idempotency_key, request_hash, fallback,
             created_at, updated_at, broadcast_id, test, confirm_within_seconds)
        SELECT nid, tenant_id, channel, user_id, template, pinned_version, locale,
               COALESCE(data, '{}'::jsonb), send_at, 'accepted', 1, 0, idempotency_key,
               request_hash, fallback, at, at, broadcast_id, COALESCE(test, false),
               confirm_within_seconds
        FROM given
        ON CONFLICT DO NOTHING
    ), ev AS (
        INSERT INTO notification_events
            (notification_id, event_key, status, cycle, attempt, at)
        SELECT nid, key, 'accepted', 1, 0, at FROM given
        ON CONFLICT (notification_id, event_key) DO NOTHING
        RETURNING id, status, notification_id
    ), """
    + _ENQUEUE_WEBHOOKS.format(
        new_events="ev",
        owner_join="JOIN given owner ON owner.nid = new_event.notification_id",
        tenant="owner.tenant_id",
    )
    + " SELECT count(*) FROM ev"
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
        "test": request.test,
        "confirm_within_seconds": request.confirm_within_seconds,
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
        await conn.execute(
            _RECORD_ACCEPTED_MANY,
            {"rows": [_accepted_row(r) for r in requests], "annotation": False},
        )
