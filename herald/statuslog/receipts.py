"""Delivery receipts and reports: what became of a message after ``sent``.

A receipt says ``delivered`` or ``undelivered``. Receipts can arrive twice, out of order,
or before Herald has recorded ``sent`` at all; the rule that makes the outcome
independent of that order lives here, in SQL, so it holds across processes:

- Each receipt is an event in the log (keyed by cycle, source and report: the same
  report twice is logged once).
- The strongest receipt of the cycle is kept on the notification's row (``receipt_*``):
  ``delivered`` beats ``undelivered``, and of two of a kind the later report wins
  (``herald_receipt_outranks``, created by migration 0003).
- A notification already ``sent`` (or with a receipt) takes the strongest receipt's
  status at once; one still on its way keeps its status until ``sent`` is recorded, and
  the ``sent`` write then takes the kept receipt's status instead.

Both writers update the same row, so PostgreSQL's row lock orders them and the later one
sees what the earlier one wrote. Receipts that name only the provider's message id
(Twilio) meet the ``sent`` write on ``provider_messages`` the same way: whichever comes
second finds the other's half there (``RECORD_LINKED_SENT``).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import (
    CTE,
    Boolean,
    ColumnElement,
    ColumnExpressionArgument,
    DateTime,
    Integer,
    Select,
    String,
    Text,
    bindparam,
    case,
    cast,
    func,
    literal,
    literal_column,
    null,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.dml import Update

from herald.contracts import Receipt
from herald.db import Notification, ProviderMessage, single_statements
from herald.statuslog.log import (
    CYCLE,
    DETAIL,
    EVENT,
    NID,
    NOTIFICATIONS,
    PROVIDER_MESSAGE_ID,
    count_receipt_change,
    event_rows,
    kept_receipt,
    log_events,
    move_status,
    offer_to_webhooks,
)

# Providers whose receipts name their own message id rather than ours.
_RECEIPTS_BY_MESSAGE_ID = ("twilio",)


def reports_by_message_id(provider: str | None) -> bool:
    """Whether this provider's receipts name its message id (so ``sent`` must link it)."""
    return provider is not None and provider.split("-", 1)[0] in _RECEIPTS_BY_MESSAGE_ID


# The parameters of one receipt (``_receipt_params``), named apart from the columns (see
# ``log``); with ``nid`` for a receipt naming the notification.
_R_CYCLE = bindparam("r_cycle", type_=Integer)
_R_STATUS = bindparam("r_status", type_=Text)
_R_AT = bindparam("r_at", type_=DateTime(timezone=True))
_R_ERROR = bindparam("r_error", type_=Text)
_REPORT_KEY = bindparam("report_key", type_=String)
_KEY_SUFFIX = bindparam("key_suffix", type_=Text)
_SOURCE = bindparam("source", type_=String)
_PMID = bindparam("pmid", type_=String)

# Statuses of a cycle that was sent: a receipt moves these at once.
_SENT_ALREADY = ("sent", "delivered", "undelivered")


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


def _outranks(
    new_status: ColumnExpressionArgument[Any],
    new_at: ColumnExpressionArgument[Any],
    old_status: ColumnExpressionArgument[Any],
    old_at: ColumnExpressionArgument[Any],
) -> ColumnElement[bool]:
    """SQL: the first receipt outranks the second (migration 0003's function)."""
    return func.herald_receipt_outranks(new_status, new_at, old_status, old_at, type_=Boolean)


def _keep_receipt(
    wins: ColumnElement[bool], **receipt: ColumnElement[Any]
) -> dict[Any, ColumnElement[Any]]:
    """The row's ``receipt_*`` columns (``cycle``, ``status``, ``error``, ``at``) set to
    ``receipt`` where it ``wins``, left as they are elsewhere."""
    return {
        column: case((wins, receipt[column.key.removeprefix("receipt_")]), else_=column)
        for column in (
            Notification.receipt_cycle,
            Notification.receipt_status,
            Notification.receipt_error,
            Notification.receipt_at,
        )
    }


def _locked_row(nid: ColumnElement[Any], cycle: ColumnElement[Any]) -> CTE:
    """CTE ``before``: the notification a receipt is for as it is before the receipt,
    row-locked so that the update that follows sees the same version (its status then is
    what the receipt moved the status from)."""
    n = NOTIFICATIONS.alias("n")
    return (
        select(
            n.c.id.label("b_id"),
            n.c.cycle.label("b_cycle"),
            n.c.status.label("b_status"),
            n.c.channel.label("b_channel"),
        )
        .where(n.c.id == nid, n.c.cycle == cycle)
        .with_for_update(of=n)
        .cte("before")
    )


def _apply_receipt(before: CTE) -> CTE:
    """CTE ``moved``: keep the receipt in the parameters on the locked row (``before``) if
    it is the strongest of its cycle so far, and move the status if the cycle was already
    sent. Returns the status before and after, and the channel."""
    cycle = before.c.b_cycle
    wins = _outranks(
        _R_STATUS, _R_AT, kept_receipt(Notification.receipt_status, cycle), Notification.receipt_at
    )
    moves = Notification.status.in_(_SENT_ALREADY) & wins
    return (
        update(Notification)
        .values(
            _keep_receipt(wins, cycle=cycle, status=_R_STATUS, error=_R_ERROR, at=_R_AT)
            | {
                Notification.status: case((moves, _R_STATUS), else_=Notification.status),
                Notification.last_error: case(
                    (moves & (_R_STATUS == "undelivered"), _R_ERROR),
                    (moves, null()),
                    else_=Notification.last_error,
                ),
                Notification.updated_at: case(
                    (moves, func.greatest(Notification.updated_at, _R_AT)),
                    else_=Notification.updated_at,
                ),
            }
        )
        .where(Notification.id == before.c.b_id, Notification.cycle == cycle)
        .returning(
            Notification.id,
            before.c.b_status.label("old_status"),
            Notification.status.label("new_status"),
            before.c.b_channel.label("channel"),
        )
        .cte("moved")
    )


def _receipt_event(
    nid: ColumnElement[Any],
    cycle: ColumnElement[Any],
    key_suffix: ColumnElement[Any] = _KEY_SUFFIX,
    status: ColumnElement[Any] = func.coalesce(_R_STATUS, "sent"),
    source: ColumnElement[Any] = _SOURCE,
    detail: ColumnElement[Any] = DETAIL,
    at: ColumnElement[Any] = _R_AT,
) -> Select[Any]:
    """The row of a receipt's event in the log, by default the receipt in the parameters
    (``r_status`` None: a report, logged only); the caller adds its FROM and WHERE."""
    return select(
        nid.label("notification_id"),
        (cast(cycle, Text) + key_suffix).label("event_key"),
        status.label("status"),
        cycle.label("cycle"),
        literal(0).label("attempt"),
        source.label("provider"),
        detail.label("detail"),
        at.label("at"),
    )


# A receipt for a notification named by its id (email bounce, the client's own report).
_RECEIPT_EVENT = log_events(event_rows(_receipt_event(NID, _R_CYCLE)))
_MOVED = _apply_receipt(_locked_row(NID, _R_CYCLE))
_RECORD_RECEIPT = (
    select(
        select(func.count()).select_from(_RECEIPT_EVENT).scalar_subquery().label("logged"),
        _MOVED.c.old_status,
        _MOVED.c.new_status,
        _MOVED.c.channel,
    )
    # One row, whether or not the receipt moved anything.
    .select_from(select(literal_column("1")).subquery("one").outerjoin(_MOVED, true()))
    .add_cte(offer_to_webhooks(_RECEIPT_EVENT))
)

# A report that changes nothing but the log (Twilio ``queued``, a delayed email).
_RECORD_REPORT = select(func.count().label("logged")).select_from(_RECEIPT_EVENT)

# A receipt naming the provider's message id. The upsert meets the ``sent`` write's on
# the message id's row: if ``sent`` is there, the receipt applies to its notification at
# once; if not, it waits on that row for the ``sent`` write to apply it.
_WAITING = pg_insert(ProviderMessage).values(
    provider_message_id=_PMID,
    receipt_status=_R_STATUS,
    receipt_report=_REPORT_KEY,
    receipt_error=_R_ERROR,
    receipt_detail=DETAIL,
    receipt_at=_R_AT,
)
_WAITING_WINS = _outranks(
    _WAITING.excluded.receipt_status,
    _WAITING.excluded.receipt_at,
    ProviderMessage.receipt_status,
    ProviderMessage.receipt_at,
)
_WAITS = (
    _WAITING.on_conflict_do_update(
        index_elements=[ProviderMessage.provider_message_id],
        set_={
            column: case(
                (_WAITING_WINS, _WAITING.excluded[column]),
                else_=ProviderMessage.__table__.c[column],
            )
            for column in (
                "receipt_status",
                "receipt_report",
                "receipt_error",
                "receipt_detail",
                "receipt_at",
            )
        },
    )
    .returning(
        ProviderMessage.notification_id.label("l_nid"), ProviderMessage.cycle.label("l_cycle")
    )
    .cte("link")
)
_WAITING_EVENT = log_events(
    event_rows(_receipt_event(_WAITS.c.l_nid, _WAITS.c.l_cycle).where(_WAITS.c.l_nid.is_not(None)))
)
_WAITING_MOVED = _apply_receipt(_locked_row(_WAITS.c.l_nid, _WAITS.c.l_cycle))
_RECORD_MESSAGE_RECEIPT = (
    select(
        _WAITS.c.l_nid,
        _WAITS.c.l_cycle,
        _WAITING_MOVED.c.old_status,
        _WAITING_MOVED.c.new_status,
        _WAITING_MOVED.c.channel,
    )
    .select_from(_WAITS.outerjoin(_WAITING_MOVED, _WAITING_MOVED.c.id == _WAITS.c.l_nid))
    .add_cte(offer_to_webhooks(_WAITING_EVENT))
)

# A report logged only, naming the provider's message id: logged if ``sent`` linked it.
_LINKED = (
    select(ProviderMessage.notification_id.label("l_nid"), ProviderMessage.cycle.label("l_cycle"))
    .where(
        ProviderMessage.provider_message_id == _PMID, ProviderMessage.notification_id.is_not(None)
    )
    .cte("link")
)
_RECORD_MESSAGE_REPORT = select(_LINKED.c.l_nid, _LINKED.c.l_cycle).add_cte(
    log_events(event_rows(_receipt_event(_LINKED.c.l_nid, _LINKED.c.l_cycle)))
)

# ``sent`` from a provider that reports by message id: link the id to this send cycle
# and take over a receipt that arrived before (logging it, and offering it to webhooks).
_SENT_LINK = pg_insert(ProviderMessage).values(
    provider_message_id=PROVIDER_MESSAGE_ID, notification_id=NID, cycle=CYCLE
)
_LINK = (
    _SENT_LINK.on_conflict_do_update(
        index_elements=[ProviderMessage.provider_message_id],
        set_={
            "notification_id": _SENT_LINK.excluded.notification_id,
            "cycle": _SENT_LINK.excluded.cycle,
        },
    )
    .returning(
        ProviderMessage.notification_id.label("l_nid"),
        ProviderMessage.receipt_status.label("l_status"),
        ProviderMessage.receipt_report.label("l_report"),
        ProviderMessage.receipt_error.label("l_error"),
        ProviderMessage.receipt_detail.label("l_detail"),
        ProviderMessage.receipt_at.label("l_at"),
    )
    .cte("link")
)
_EARLY_EVENT = log_events(
    event_rows(
        _receipt_event(
            NID,
            CYCLE,
            key_suffix=literal(":receipt:", Text) + _LINK.c.l_report,
            status=_LINK.c.l_status,
            source=func.split_part(_LINK.c.l_report, ":", 1),
            detail=_LINK.c.l_detail,
            at=_LINK.c.l_at,
        ).where(_LINK.c.l_status.is_not(None))
    ),
    name="early",
)
_LINK_WINS = _outranks(
    _LINK.c.l_status,
    _LINK.c.l_at,
    kept_receipt(Notification.receipt_status),
    Notification.receipt_at,
)


def linked_sent(event: CTE) -> Update:
    """``sent`` (``event``, from ``event_params``) for a provider that reports by message
    id: returns the status written and the channel, as ``events``' own statement does."""
    return (
        move_status(
            event,
            kept_status=case(
                (_LINK_WINS, _LINK.c.l_status), else_=kept_receipt(Notification.receipt_status)
            ),
            kept_error=case(
                (_LINK_WINS, _LINK.c.l_error), else_=kept_receipt(Notification.receipt_error)
            ),
            receipt_columns=_keep_receipt(
                _LINK_WINS,
                cycle=CYCLE,
                status=_LINK.c.l_status,
                error=_LINK.c.l_error,
                at=_LINK.c.l_at,
            ),
        )
        # The link is this notification's (as ``id = :nid`` says too): the update's one
        # row of ``link`` is joined, not multiplied.
        .where(Notification.id == _LINK.c.l_nid)
        .add_cte(offer_to_webhooks(union_all(select(event), select(_EARLY_EVENT)).subquery()))
        .returning(Notification.status, Notification.channel)
    )


RECORD_LINKED_SENT = linked_sent(EVENT)


async def record_receipt(
    engine: AsyncEngine, notification_id: uuid.UUID, cycle: int, receipt: Receipt
) -> bool:
    """Log a receipt of send cycle ``cycle`` and apply it (see above); False if this
    report was already logged."""
    statement = _RECORD_RECEIPT if receipt.status is not None else _RECORD_REPORT
    params = _receipt_params(receipt) | {"nid": notification_id, "r_cycle": cycle}
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
