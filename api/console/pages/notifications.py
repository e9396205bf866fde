"""Notifications: the list (filters, newest first, refreshing itself) and one
notification's page (its timeline, cancel and resend, a link to its workflow)."""

from __future__ import annotations

import uuid
from itertools import groupby
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from api.console.rendering import act_on_item, add_live_page, render
from api.console.session import Console, ConsoleReadOrSendDep, ConsoleSendDep
from api.errors import ApiError, not_found
from api.schemas.notifications import EventOut, NotificationPage
from api.services import notifications
from herald.contracts import Channel, Status, has_nul

router = APIRouter(prefix="/notifications")
PAGE_SIZE = 50


def _uuid_or_empty(value: str) -> str:
    """A broadcast id as the filter keeps it: its canonical form, or empty (any) when it
    is not an id at all, as an unknown status is."""
    try:
        return str(uuid.UUID(value.strip())) if value.strip() else ""
    except ValueError:
        return ""


class Filters:
    """The list's filters, as query parameters (empty means any)."""

    def __init__(
        self,
        status: Annotated[str, Query(max_length=16)] = "",
        channel: Annotated[str, Query(max_length=8)] = "",
        user_id: Annotated[str, Query(max_length=128)] = "",
        template: Annotated[str, Query(max_length=128)] = "",
        cursor: Annotated[str, Query(max_length=512)] = "",
        broadcast_id: Annotated[str, Query(max_length=64)] = "",
        error: Annotated[str, Query(max_length=256)] = "",
    ) -> None:
        self.status = status if status in Status.__members__ else ""
        self.channel = channel if channel in Channel.__members__ else ""
        self.user_id = user_id.strip()
        self.template = template.strip()
        self.cursor = cursor
        self.broadcast_id = _uuid_or_empty(broadcast_id)
        # The start of the last error (the overview's failure reasons link here).
        if has_nul(error):
            raise ApiError(422, "error: may not contain the NUL character (\\u0000)")
        self.error = error.strip()

    def query(self, **changes: str) -> str:
        """These filters as a query string, with ``changes`` applied, empty ones left out."""
        values = {
            "status": self.status,
            "channel": self.channel,
            "user_id": self.user_id,
            "template": self.template,
            "cursor": self.cursor,
            "broadcast_id": self.broadcast_id,
            "error": self.error,
            **changes,
        }
        return urlencode({name: value for name, value in values.items() if value})


async def _page(console: Console, filters: Filters) -> NotificationPage:
    return await notifications.list_notifications(
        console.backends.engine,
        console.tenant,
        status=Status(filters.status) if filters.status else None,
        channel=Channel(filters.channel) if filters.channel else None,
        user_id=filters.user_id or None,
        template=filters.template or None,
        limit=PAGE_SIZE,
        cursor=filters.cursor or None,
        broadcast_id=uuid.UUID(filters.broadcast_id) if filters.broadcast_id else None,
        error_prefix=filters.error or None,
    )


@router.get("", response_class=HTMLResponse)
async def list_page(
    request: Request, console: ConsoleReadOrSendDep, filters: Annotated[Filters, Depends()]
) -> Response:
    """The list with its filter form; the rows refresh themselves."""
    try:
        page = await _page(console, filters)
    except ApiError as err:  # a cursor this console did not make
        return render(
            request,
            "error.html",
            console,
            status_code=err.status_code,
            title="Cannot show this page",
            message=err.message,
        )
    return render(
        request,
        "notifications/list.html",
        console,
        page=page,
        filters=filters,
        channels=[channel.value for channel in Channel],
    )


@router.get("/rows", response_class=HTMLResponse)
async def rows(
    request: Request, console: ConsoleReadOrSendDep, filters: Annotated[Filters, Depends()]
) -> Response:
    """The table body alone, for the list's refresh."""
    page = await _page(console, filters)
    return render(request, "notifications/rows.html", console, page=page, filters=filters)


def _notification_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as err:
        raise not_found(f"notification {value}") from err


def _cycles(events: list[EventOut]) -> list[tuple[int, list[EventOut]]]:
    ordered = sorted(events, key=lambda event: event.cycle)
    return [(cycle, list(items)) for cycle, items in groupby(ordered, key=lambda e: e.cycle)]


async def _live(console: Console, notification_id: uuid.UUID) -> dict[str, Any]:
    engine = console.backends.engine
    notification = await notifications.get_notification(engine, console.tenant, notification_id)
    events = await notifications.list_events(engine, console.tenant, notification_id)
    return {
        "n": notification,
        "cycles": _cycles(events),
        "terminal": notification.status.terminal,
        "temporal_url": notifications.temporal_ui_url(console.backends.settings, notification_id),
    }


async def _shown(console: Console, notification_id: str) -> dict[str, Any]:
    return await _live(console, _notification_id(notification_id))


# One notification: status, timeline, actions; refreshing until it has ended.
add_live_page(router, "notifications", _shown, "notification")


async def _act(request: Request, console: Console, notification_id: str, action: str) -> Response:
    identifier = _notification_id(notification_id)
    chosen = notifications.cancel if action == "cancel" else notifications.resend

    async def act() -> None:
        await chosen(console.backends, console.tenant, identifier)

    return await act_on_item(
        request, console, "notifications", _shown, str(identifier), act, action
    )


@router.post("/{notification_id}/cancel")
async def cancel(request: Request, notification_id: str, console: ConsoleSendDep) -> Response:
    """What ``POST /v1/notifications/{id}/cancel`` does."""
    return await _act(request, console, notification_id, "cancel")


@router.post("/{notification_id}/resend")
async def resend(request: Request, notification_id: str, console: ConsoleSendDep) -> Response:
    """What ``POST /v1/notifications/{id}/resend`` does."""
    return await _act(request, console, notification_id, "resend")
