"""Users: search by id or email, and one user's contact points, preferences, devices and
latest notifications."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from api.console.rendering import render
from api.console.session import Console, ConsoleReadDep
from api.schemas.users import UserPage
from api.services import notifications, users

router = APIRouter(prefix="/users")
PAGE_SIZE = 50
RECENT = 20

Search = Annotated[str, Query(max_length=128)]
Cursor = Annotated[str, Query(max_length=512)]


async def _page(console: Console, search: str, cursor: str) -> UserPage:
    return await users.list_users(
        console.backends.engine,
        console.tenant.id,
        search=search.strip() or None,
        limit=PAGE_SIZE,
        cursor=cursor or None,
    )


@router.get("", response_class=HTMLResponse)
async def list_page(
    request: Request, console: ConsoleReadDep, search: Search = "", cursor: Cursor = ""
) -> Response:
    """The search form and the matching users; results update as you type."""
    page = await _page(console, search, cursor)
    return render(request, "users/list.html", console, page=page, search=search)


@router.get("/rows", response_class=HTMLResponse)
async def rows(
    request: Request, console: ConsoleReadDep, search: Search = "", cursor: Cursor = ""
) -> Response:
    """The results alone, for the search as you type."""
    page = await _page(console, search, cursor)
    return render(request, "users/rows.html", console, page=page, search=search)


@router.get("/{user_id}", response_class=HTMLResponse)
async def detail(request: Request, user_id: str, console: ConsoleReadDep) -> Response:
    """One user: contact points, preferences, devices, latest notifications."""
    engine, tenant = console.backends.engine, console.tenant
    user = await users.get_user(engine, tenant.id, user_id)
    devices = await users.list_devices(engine, tenant.id, user_id)
    recent = await notifications.list_notifications(
        engine, tenant, status=None, channel=None, user_id=user_id, limit=RECENT, cursor=None
    )
    return render(
        request, "users/detail.html", console, user=user, devices=devices.items, recent=recent
    )
