"""Broadcasts: the list (newest first, with progress) and one broadcast's page, whose
progress refreshes itself while it runs, with its cancel button."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from api.console.rendering import act_on_item, add_live_page, render
from api.console.session import Console, ConsoleReadOrSendDep, ConsoleSendDep
from api.errors import not_found
from api.services import broadcasts
from herald.contracts import BroadcastStatus

router = APIRouter(prefix="/broadcasts")
PAGE_SIZE = 50


def _broadcast_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as err:
        raise not_found(f"broadcast {value}") from err


def _backends(console: Console) -> broadcasts.BroadcastBackends:
    backends = console.backends
    return broadcasts.BroadcastBackends(backends.engine, backends.temporal, backends.settings)


async def _live(console: Console, broadcast_id: uuid.UUID) -> dict[str, Any]:
    found = await broadcasts.get_broadcast(console.backends.engine, console.tenant, broadcast_id)
    # Running, or ended with recipients it started still on their way: keep refreshing.
    settling = found.status is BroadcastStatus.running or found.in_flight > 0
    return {"b": found, "settling": settling}


@router.get("", response_class=HTMLResponse)
async def list_page(
    request: Request,
    console: ConsoleReadOrSendDep,
    status: Annotated[str, Query(max_length=16)] = "",
    cursor: Annotated[str, Query(max_length=512)] = "",
) -> Response:
    """Every broadcast with its progress, optionally only those in one state."""
    wanted = BroadcastStatus(status) if status in BroadcastStatus.__members__ else None
    page = await broadcasts.list_broadcasts(
        console.backends.engine,
        console.tenant,
        status=wanted,
        limit=PAGE_SIZE,
        cursor=cursor or None,
    )
    return render(
        request,
        "broadcasts/list.html",
        console,
        page=page,
        status=wanted.value if wanted else "",
        broadcast_statuses=[value.value for value in BroadcastStatus],
    )


async def _shown(console: Console, broadcast_id: str) -> dict[str, Any]:
    return await _live(console, _broadcast_id(broadcast_id))


# One broadcast: audience, progress, outcomes, cancel; refreshing until all it started ended.
add_live_page(router, "broadcasts", _shown, "broadcast")


@router.post("/{broadcast_id}/cancel")
async def cancel(request: Request, broadcast_id: str, console: ConsoleSendDep) -> Response:
    """What ``POST /v1/broadcasts/{id}/cancel`` does: start no more of its recipients."""
    identifier = _broadcast_id(broadcast_id)

    async def act() -> None:
        await broadcasts.cancel_broadcast(_backends(console), console.tenant, identifier)

    return await act_on_item(request, console, "broadcasts", _shown, str(identifier), act, "cancel")
