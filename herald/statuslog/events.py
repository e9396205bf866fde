"""Status events: every transition of a notification, appended once to the log, offered
to webhooks and moving the notification's current status, in one statement each.

Used by the core worker (every transition) and by provider activities (``retrying``,
``sent``, and the acceptance a retried send finds already recorded).
"""

from __future__ import annotations

from sqlalchemy import bindparam, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncEngine

from herald.contracts import SendRequest, SendResult, Status, StatusEvent
from herald.db import Notification, single_statements
from herald.statuslog.log import (
    EVENT,
    count_receipt_change,
    event_params,
    move_status,
    offer_to_webhooks,
)
from herald.statuslog.receipts import RECORD_LINKED_SENT, reports_by_message_id

_HOOKS = offer_to_webhooks(EVENT)
# What a status move returns: the status it wrote (``sent`` may become the status of a
# receipt that came first) and the channel.
_RECORD_EVENT = (
    move_status(EVENT).add_cte(_HOOKS).returning(Notification.status, Notification.channel)
)
# The same, saying whether the event is new (a step run again finds its own event).
_RECORD_NEW_EVENT = (
    select(func.count())
    .select_from(EVENT)
    .add_cte(_HOOKS, move_status(EVENT).returning(literal_column("1")).cte("moved"))
)


async def record_event(engine: AsyncEngine, event: StatusEvent) -> None:
    """Append ``event`` once and move the notification's current status forward (one
    statement, so it needs no transaction of its own)."""
    statement = _RECORD_EVENT
    if (
        event.status is Status.sent
        and event.provider_message_id is not None
        and reports_by_message_id(event.provider)
    ):
        statement = RECORD_LINKED_SENT
    async with single_statements(engine) as conn:
        moved = (await conn.execute(statement, event_params(event))).first()
    if moved is not None and event.status is Status.sent and moved.status != Status.sent.value:
        # A receipt that came before ``sent`` decided the status as it was written.
        count_receipt_change(moved.channel, Status.sent.value, moved.status)


async def record_new_event(engine: AsyncEngine, event: StatusEvent) -> bool:
    """``record_event``, and whether the event was new: False means it was written
    before, by an earlier run of the same step."""
    async with single_statements(engine) as conn:
        written = (await conn.execute(_RECORD_NEW_EVENT, event_params(event))).scalar_one()
    return bool(written)


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
