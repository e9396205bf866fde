"""Status events: every transition of a notification, appended once to the log, offered
to webhooks and moving the notification's current status, in one statement each.

Used by the core worker (every transition) and by provider activities (``retrying``,
``sent``, and the acceptance a retried send finds already recorded).
"""

from __future__ import annotations

from sqlalchemy import CTE, bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.dml import Update

from herald.contracts import SendRequest, SendResult, Status, StatusEvent
from herald.db import Notification, single_statements
from herald.statuslog.log import (
    EVENT,
    EVENT_PAIR,
    count_receipt_change,
    event_params,
    move_status,
    offer_to_webhooks,
)
from herald.statuslog.receipts import RECORD_LINKED_SENT, linked_sent, reports_by_message_id


def _recorded(event: CTE) -> Update:
    """Log ``event``, offer it to webhooks and move the status; returns the status written
    (``sent`` may become the status of a receipt that came first) and the channel."""
    return (
        move_status(event)
        .add_cte(offer_to_webhooks(event))
        .returning(Notification.status, Notification.channel)
    )


_RECORD_EVENT = _recorded(EVENT)
# The same, with the event logged just before it (``EVENT_PAIR``).
_RECORD_PAIR = _recorded(EVENT_PAIR)
_RECORD_LINKED_PAIR = linked_sent(EVENT_PAIR)


async def record_event(
    engine: AsyncEngine, event: StatusEvent, before: StatusEvent | None = None
) -> None:
    """Append ``event`` once and move the notification's current status forward (one
    statement, so it needs no transaction of its own); with ``before``, of the same
    notification and cycle, that event is appended first by the same statement."""
    linked = (
        event.status is Status.sent
        and event.provider_message_id is not None
        and reports_by_message_id(event.provider)
    )
    if before is None:
        statement = RECORD_LINKED_SENT if linked else _RECORD_EVENT
    else:
        statement = _RECORD_LINKED_PAIR if linked else _RECORD_PAIR
    async with single_statements(engine) as conn:
        moved = (await conn.execute(statement, event_params(event, before))).first()
    if moved is not None and event.status is Status.sent and moved.status != Status.sent.value:
        # A receipt that came before ``sent`` decided the status as it was written.
        count_receipt_change(moved.channel, Status.sent.value, moved.status)


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
    return None if row is None else acceptance(row.provider, row.provider_message_id, row.attempts)


def acceptance(
    provider: str | None, provider_message_id: str | None, attempts: int
) -> SendResult | None:
    """A send cycle's recorded acceptance (its provider and message id), if it has one."""
    if provider is None or provider_message_id is None:
        return None
    return SendResult(
        provider=provider, provider_message_id=provider_message_id, attempt=attempts, recorded=True
    )
