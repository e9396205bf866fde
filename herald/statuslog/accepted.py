"""The ``accepted`` write: a new notification's row and its ``accepted`` event, for one
notification (each send cycle) or for many at once (first cycles), one statement each.

The API and the other ways in call this right after the workflow start, and the workflow
makes the same write in its first step, so a crash between the two never leaves a
notification without a row; whichever comes second changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy import CTE, String, bindparam, column, func, literal, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from herald.contracts import NotificationInput, Status, StatusEvent
from herald.db import Notification, single_statements
from herald.statuslog.log import (
    EVENT,
    NOTIFICATIONS,
    event_params,
    event_rows,
    log_events,
    move_status,
    offer_to_webhooks,
)

# The columns of a notification's row that acceptance takes from its request: the one
# list for one notification and for many. The row is written already in its accepted
# state (``status``, ``attempts`` and ``updated_at`` below).
_ROW: dict[str, Callable[[NotificationInput], Any]] = {
    "id": attrgetter("notification_id"),
    "tenant_id": attrgetter("tenant_id"),
    "channel": attrgetter("channel.value"),
    "user_id": attrgetter("user_id"),
    "template": attrgetter("template"),
    "template_version": attrgetter("template_version"),
    "locale": attrgetter("locale"),
    "data": attrgetter("data"),
    "send_at": attrgetter("send_at"),
    "cycle": attrgetter("cycle"),
    "idempotency_key": attrgetter("idempotency_key"),
    "request_hash": attrgetter("request_hash"),
    "fallback": lambda request: [channel.value for channel in request.fallback] or None,
    "created_at": attrgetter("created_at"),
    "test": attrgetter("test"),
    "confirm_within_seconds": attrgetter("confirm_within_seconds"),
    "broadcast_id": attrgetter("broadcast_id"),
}

# The requests as rows (``_given``), each with its ``accepted`` event's key.
_GIVEN = select(
    func.jsonb_to_recordset(bindparam("rows", type_=JSONB))
    .table_valued(
        *(column(name, NOTIFICATIONS.c[name].type) for name in _ROW),
        column("key", String),
    )
    .render_derived(name="r", with_types=True)
).cte("given")

# The notifications' rows; a row that is there already (its workflow or the API wrote it
# first, or this is a later cycle) is left as it is.
_FRESH = (
    pg_insert(Notification)
    .from_select(
        [*_ROW, "status", "attempts", "updated_at"],
        select(
            *(_GIVEN.c[name] for name in _ROW),
            literal(Status.accepted.value),
            literal(0),
            _GIVEN.c.created_at,
        ),
        # Columns not named take their server defaults, as the tables' migrations say.
        include_defaults=False,
    )
    .on_conflict_do_nothing()
    .cte("fresh")
)

# One notification's row, then its accepted event (in the parameters), moving the row
# for a later cycle. The statement's own insert is invisible to its update, which is
# fine: a new row needs no moving.
_RECORD_ACCEPTED = move_status(EVENT).add_cte(_FRESH, offer_to_webhooks(EVENT, owners=_GIVEN))

# Many new notifications' rows and their accepted events (first cycles). A new row needs
# no status move, and a row its workflow wrote first already has its ``accepted`` event,
# so both inserts simply leave what is there.
_ACCEPTED_EVENTS = log_events(
    event_rows(
        select(
            _GIVEN.c.id.label("notification_id"),
            _GIVEN.c.key.label("event_key"),
            literal(Status.accepted.value).label("status"),
            _GIVEN.c.cycle.label("cycle"),
            literal(0).label("attempt"),
            _GIVEN.c.created_at.label("at"),
        )
    )
)
_RECORD_ACCEPTED_MANY = (
    select(func.count())
    .select_from(_ACCEPTED_EVENTS)
    .add_cte(_FRESH, offer_to_webhooks(_ACCEPTED_EVENTS, owners=_GIVEN))
)


def accepted_ctes() -> list[CTE]:
    """``record_accepted``'s write as CTEs, for a statement that reads what it needs in
    the same round trip (``activities/prepare.py``); its parameters: ``accepted_params``."""
    return [_RECORD_ACCEPTED.cte("accepted")]


def accepted_params(request: NotificationInput) -> dict[str, Any]:
    """The parameters of ``record_accepted``'s statement (and ``accepted_ctes``)."""
    return event_params(_accepted(request)) | {"rows": [_given(request)]}


def _accepted(request: NotificationInput) -> StatusEvent:
    return StatusEvent(
        notification_id=request.notification_id,
        status=Status.accepted,
        cycle=request.cycle,
        at=request.created_at,
        detail="resend requested" if request.cycle > 1 else None,
    )


def _given(request: NotificationInput) -> dict[str, Any]:
    """``request`` as one row of ``_GIVEN`` (JSON for ``jsonb_to_recordset``)."""
    row = {name: value(request) for name, value in _ROW.items()}
    return to_jsonable_python(row | {"key": _accepted(request).key})  # type: ignore[no-any-return]


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
    await conn.execute(_RECORD_ACCEPTED, accepted_params(request))


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
            {"rows": [_given(request) for request in requests], "annotation": False},
        )
