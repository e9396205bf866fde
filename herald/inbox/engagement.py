"""What a user did with an in-app message, told to everything that follows the
notification: the first ``seen`` is its ``delivered`` receipt (the receipt path every
provider's receipts take, so ``confirm_within_seconds`` is met by it); ``seen``,
``read`` and ``archived`` are appended to its events (offered to webhooks as
``notification.seen`` / ``.read`` / ``.archived`` in the same statement); and a flow run
waiting on it hears of the read (``wait … for: read``).

Each engagement is logged once per notification and send cycle: reading a message,
marking it unread and reading it again logs one ``read``.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from herald import statuslog
from herald.contracts import Engagement, Receipt, ReceiptSignal, Status
from herald.db import single_statements
from herald.inbox.store import Change
from herald.receipts import tell_flow_run, tell_workflow
from herald.statuslog.log import EVENT, offer_to_webhooks

log = logging.getLogger(__name__)

SOURCE = "inbox"

# The event in the parameters, offered to the tenant's webhooks in the same statement.
_RECORD = select(func.count().label("logged")).select_from(EVENT).add_cte(offer_to_webhooks(EVENT))

_DETAIL = {
    Engagement.seen: "seen in the in-app inbox",
    Engagement.read: "read in the in-app inbox",
    Engagement.archived: "archived in the in-app inbox",
}


async def record_engagement(engine: AsyncEngine, change: Change, kind: Engagement) -> bool:
    """Append ``kind`` to the notification's events (once per cycle); True if new."""
    params: dict[str, Any] = {
        "nid": change.notification_id,
        "key": f"{change.cycle}:{SOURCE}:{kind.value}",
        "status": kind.value,
        "cycle": change.cycle,
        "attempt": 0,
        "provider": SOURCE,
        "detail": _DETAIL[kind],
        "at": change.at,
        "annotation": False,
    }
    async with single_statements(engine) as conn:
        return bool((await conn.execute(_RECORD, params)).scalar())


async def engaged(engine: AsyncEngine, temporal: Client | None, changes: list[Change]) -> None:
    """Tell the log, the webhooks, the notification's workflow and its flow run what the
    user did (after the inbox change is committed). A message whose notification is gone
    (its user was erased) changes in the inbox alone: the action already stands."""
    for change in changes:
        try:
            await _engaged(engine, temporal, change)
        except IntegrityError:
            log.warning(
                "engagement not logged: the notification is gone",
                extra={"notification_id": str(change.notification_id)},
            )


async def _engaged(engine: AsyncEngine, temporal: Client | None, change: Change) -> None:
    if change.first_seen:
        await _delivered(engine, temporal, change)
        await record_engagement(engine, change, Engagement.seen)
    if change.first_read and await record_engagement(engine, change, Engagement.read):
        if temporal is not None:
            await tell_flow_run(temporal, engine, change.notification_id, "read")
    if change.archived:
        await record_engagement(engine, change, Engagement.archived)


async def _delivered(engine: AsyncEngine, temporal: Client | None, change: Change) -> None:
    receipt = Receipt(
        status=Status.delivered,
        source=SOURCE,
        report="seen",
        at=change.at,
        detail="first seen in the in-app inbox",
    )
    await statuslog.record_receipt(engine, change.notification_id, change.cycle, receipt)
    if temporal is None:
        return
    await tell_workflow(
        temporal,
        change.notification_id,
        ReceiptSignal(cycle=change.cycle, status=Status.delivered, at=change.at),
        engine=engine,
    )
