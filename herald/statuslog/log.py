"""The pieces every status log write is built from: appending events to the log,
offering each new event to the tenant's webhooks, and moving the notification's current
status. Each is a SQLAlchemy construct (a CTE or an UPDATE) that the writes in
``events``, ``receipts`` and ``accepted`` put together into one statement apiece.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    CTE,
    Boolean,
    ColumnElement,
    ColumnExpressionArgument,
    CompoundSelect,
    DateTime,
    FromClause,
    Integer,
    Select,
    String,
    Text,
    Update,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    null,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, array
from sqlalchemy.dialects.postgresql import Insert as PgInsert
from sqlalchemy.dialects.postgresql import insert as pg_insert

from herald.contracts import StatusEvent
from herald.db import Notification, NotificationEvent, WebhookEndpoint, WebhookMessage
from herald.metrics import RECEIPT_CHANGES

NOTIFICATIONS = Notification.__table__

# The parameters of one status event (``event_params``), typed so that PostgreSQL reads
# each the same way wherever a statement uses it. A parameter named like a column of a
# table that a statement writes but does not set would become a value for that column
# (SQLAlchemy's rule for INSERT and UPDATE), so such names are kept apart
# (tests/herald/test_statuslog_statements.py).
NID = bindparam("nid", type_=Notification.id.type)
CYCLE = bindparam("cycle", type_=Integer)
DETAIL = bindparam("detail", type_=Text)
ANNOTATION = bindparam("annotation", type_=Boolean)
AT = bindparam("at", type_=DateTime(timezone=True))
_KEY = bindparam("key", type_=String)
_STATUS = bindparam("status", type_=String)
_ATTEMPT = bindparam("attempt", type_=Integer)
_LEG = bindparam("leg", type_=Integer)
_PROVIDER = bindparam("provider", type_=String)
PROVIDER_MESSAGE_ID = bindparam("provider_message_id", type_=String)
_TEMPLATE_VERSION = bindparam("template_version", type_=Integer)
_ERROR = bindparam("error", type_=Text)

# Statuses that end a send cycle.
_ENDED = ("sent", "delivered", "undelivered", "failed", "cancelled", "suppressed")


def event_params(event: StatusEvent, before: StatusEvent | None = None) -> dict[str, Any]:
    """The parameters of ``event`` for ``EVENT``, ``move_status`` and ``offer_to_webhooks``
    (and of ``before``, of the same notification and cycle, for ``EVENT_PAIR``)."""
    params = {
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
    if before is not None:
        if event.template_version is None:
            # The version ``sending`` names is the notification's, whatever follows it.
            params["template_version"] = before.template_version
        params |= {
            "b_key": before.key,
            "b_status": before.status.value,
            "b_attempt": before.attempt,
            "b_provider": before.provider,
            "b_detail": before.detail or before.error,
            "b_at": before.at,
        }
    return params


def log_events(rows: PgInsert, name: str = "ev") -> CTE:
    """CTE: the events ``rows`` inserts, each appended once: its key makes a write that
    is run again a no-op. Returns the new events' ``id``, ``status`` and
    ``notification_id``."""
    return (
        rows.on_conflict_do_nothing(
            index_elements=[NotificationEvent.notification_id, NotificationEvent.event_key]
        )
        .returning(
            NotificationEvent.id, NotificationEvent.status, NotificationEvent.notification_id
        )
        .cte(name)
    )


def event_rows(rows: Select[Any] | CompoundSelect[Any]) -> PgInsert:
    """The events ``rows`` selects (columns labelled as ``notification_events``'s)."""
    return pg_insert(NotificationEvent).from_select(
        rows.selected_columns.keys(), rows, include_defaults=False
    )


# The event in the parameters (``event_params``).
_EVENT_VALUES = {
    "notification_id": NID,
    "event_key": _KEY,
    "status": _STATUS,
    "cycle": CYCLE,
    "attempt": _ATTEMPT,
    "provider": _PROVIDER,
    "detail": DETAIL,
    "at": AT,
}
EVENT = log_events(pg_insert(NotificationEvent).values(**_EVENT_VALUES))

# The event in the parameters and, logged just before it by the same statement, the one
# in the ``b_`` parameters (``event_params``' ``before``): a send step writes ``sending``
# with what the provider answered, in one statement. One INSERT of the two rows, in order,
# keeps their ids in order (and the statement is cached, as a multi-row VALUES is not).
_BEFORE_VALUES = {
    "notification_id": NID,
    "event_key": bindparam("b_key", type_=String),
    "status": bindparam("b_status", type_=String),
    "cycle": CYCLE,
    "attempt": bindparam("b_attempt", type_=Integer),
    "provider": bindparam("b_provider", type_=String),
    "detail": bindparam("b_detail", type_=Text),
    "at": bindparam("b_at", type_=DateTime(timezone=True)),
}
EVENT_PAIR = log_events(
    event_rows(
        union_all(
            *(
                select(*(value.label(name) for name, value in row.items()))
                for row in (_BEFORE_VALUES, _EVENT_VALUES)
            )
        )
    )
)


def offer_to_webhooks(new_events: FromClause, owners: FromClause = NOTIFICATIONS) -> CTE:
    """CTE: offer every new event to the webhook endpoints of its notification's tenant
    that want it, in the statement that logs it: an event is never logged without its
    webhooks, nor the reverse. ``owners`` has the notifications' ``id`` and
    ``tenant_id``."""
    new_event = new_events.alias("new_event")
    owner = owners.alias("owner")
    endpoint = WebhookEndpoint.__table__.alias("endpoint")
    offers = (
        select(endpoint.c.id, new_event.c.id, func.now())
        .select_from(
            new_event.join(owner, owner.c.id == new_event.c.notification_id).join(
                endpoint, endpoint.c.tenant_id == owner.c.tenant_id
            )
        )
        .where(
            ~ANNOTATION,
            endpoint.c.disabled_at.is_(None),
            endpoint.c.events.overlap(
                cast(array([literal_column("'*'"), new_event.c.status]), ARRAY(String))
            ),
        )
    )
    return (
        pg_insert(WebhookMessage)
        .from_select(["endpoint_id", "event_id", "next_attempt_at"], offers, include_defaults=False)
        .on_conflict_do_nothing()
        .cte("hooks")
    )


def kept_receipt(
    column: ColumnExpressionArgument[Any], cycle: ColumnExpressionArgument[Any] = CYCLE
) -> ColumnElement[Any]:
    """``column`` of the receipt the row keeps, if it is of ``cycle``."""
    return case((Notification.receipt_cycle == cycle, column))


def move_status(
    new_event: CTE,
    kept_status: ColumnElement[Any] = kept_receipt(Notification.receipt_status),
    kept_error: ColumnElement[Any] = kept_receipt(Notification.receipt_error),
    receipt_columns: Mapping[Any, ColumnElement[Any]] | None = None,
) -> Update:
    """UPDATE: move the notification's current status to the event in the parameters,
    if ``new_event`` is new (its CTE returned a row).

    ``sent`` takes a receipt of its cycle that arrived first into account
    (``kept_status`` and ``kept_error``: by default the one kept on the row);
    ``receipt_columns`` are the ``receipt_*`` columns the same update sets, if any.
    """
    sent = _STATUS == "sent"
    accepted = _STATUS == "accepted"
    return (
        update(Notification)
        .values(
            {
                Notification.status: case(
                    (sent, func.coalesce(kept_status, "sent")), else_=_STATUS
                ),
                Notification.cycle: func.greatest(Notification.cycle, CYCLE),
                Notification.leg: case(
                    (Notification.cycle < CYCLE, _LEG),
                    else_=func.greatest(Notification.leg, _LEG),
                ),
                Notification.attempts: case(
                    (accepted, 0), else_=func.greatest(Notification.attempts, _ATTEMPT)
                ),
                Notification.provider: func.coalesce(_PROVIDER, Notification.provider),
                Notification.provider_message_id: func.coalesce(
                    PROVIDER_MESSAGE_ID, Notification.provider_message_id
                ),
                Notification.template_version: func.coalesce(
                    _TEMPLATE_VERSION, Notification.template_version
                ),
                Notification.last_error: case(
                    (and_(sent, kept_status == "undelivered"), kept_error),
                    (and_(sent, kept_status == "delivered"), null()),
                    (_ERROR.is_not(None), _ERROR),
                    # A suppression is no error, but its reason (the event's detail) is
                    # what a reader of the notification wants to see.
                    (_STATUS == "suppressed", DETAIL),
                    (accepted, null()),
                    else_=Notification.last_error,
                ),
                Notification.updated_at: AT,
            }
            | dict(receipt_columns or {})
        )
        .where(
            Notification.id == NID,
            ~ANNOTATION,
            select(literal_column("1")).select_from(new_event).exists(),
            Notification.cycle <= CYCLE,
            Notification.updated_at <= AT,
            # A cycle that has ended stays ended: only a newer cycle, or the next fallback
            # channel after a send that was never confirmed, moves the status again.
            or_(
                Notification.cycle < CYCLE,
                and_(Notification.cycle == CYCLE, Notification.leg < _LEG),
                Notification.status.not_in(_ENDED),
            ),
        )
    )


def count_receipt_change(channel: str | None, old: str | None, new: str | None) -> None:
    """Count a receipt that moved a notification's status (``herald_receipt_changes_total``):
    a report that was already applied, or that an earlier stronger one outranks, moves
    nothing and is not counted, so replays never count twice."""
    if channel is not None and old is not None and new is not None and old != new:
        RECEIPT_CHANGES.labels(channel=channel, from_status=old, to_status=new).inc()
