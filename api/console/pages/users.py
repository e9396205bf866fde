"""Users: search by id or email, a new user (what ``POST /v1/users`` takes), and one
user's contact points, preferences, devices and latest notifications."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from api.console.forms import field_errors, typed
from api.console.rendering import render
from api.console.session import Console, ConsoleManageDep, ConsoleReadDep
from api.errors import ApiError
from api.schemas.users import Preferences, UserCreate, UserPage
from api.services import notifications, users

router = APIRouter(prefix="/users")
PAGE_SIZE = 50
RECENT = 20

Search = Annotated[str, Query(max_length=128)]
Cursor = Annotated[str, Query(max_length=512)]
# The new-user form's path: under "-/" so that no user id (which may well be "new")
# loses its page to it.
NEW = "/-/new"
CHANNELS = tuple(name for name in Preferences.model_fields if name != "categories")
_NEW_DEFAULTS: dict[str, Any] = {
    "id": "",
    "email": "",
    "phone": "",
    "locale": "",
    "timezone": "",
    "preferences": list(CHANNELS),
}


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


def _new_form(
    request: Request,
    console: Console,
    values: dict[str, Any],
    errors: dict[str, str],
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "users/new.html",
        console,
        status_code=status_code,
        values=values,
        errors=errors,
        channels=CHANNELS,
    )


@router.get(NEW, response_class=HTMLResponse)
async def new_form(request: Request, console: ConsoleManageDep) -> Response:
    """The form for a new user."""
    return _new_form(request, console, _NEW_DEFAULTS, {})


@router.post("", response_class=HTMLResponse)
async def create(
    request: Request,
    console: ConsoleManageDep,
    user_id: Annotated[str, Form(alias="id")] = "",
    email: Annotated[str, Form()] = "",
    phone: Annotated[str, Form()] = "",
    locale: Annotated[str, Form()] = "",
    timezone: Annotated[str, Form()] = "",
    preferences: Annotated[list[str] | None, Form()] = None,
    preferences_offered: Annotated[bool, Form()] = False,
) -> Response:
    """Create the user (what ``POST /v1/users`` does), then show its page; whatever the
    API would refuse shows next to its field. A post without the form's preference boxes
    accepts every channel, as over REST."""
    contact = {
        "id": user_id,
        "email": email,
        "phone": phone,
        "locale": locale,
        "timezone": timezone,
    }
    body: dict[str, Any] = typed(contact)
    if preferences_offered:  # the boxes were there: an unticked one is an opt-out
        body["preferences"] = dict.fromkeys(CHANNELS, False) | dict.fromkeys(
            preferences or [], True
        )
    try:
        made = await users.create_user(
            console.backends.engine, console.tenant.id, UserCreate.model_validate(body)
        )
    except (ValidationError, ApiError) as err:
        values = contact | {"preferences": preferences or []}
        status = err.status_code if isinstance(err, ApiError) else 422
        return _new_form(request, console, values, field_errors(err, conflict="id"), status)
    return RedirectResponse(
        f"/console/users/{quote(made.id, safe='')}?done=created", status_code=303
    )


@router.get("/{user_id}", response_class=HTMLResponse)
async def detail(
    request: Request,
    user_id: str,
    console: ConsoleReadDep,
    done: Annotated[str, Query(max_length=16)] = "",
) -> Response:
    """One user: contact points, preferences, devices, latest notifications."""
    engine, tenant = console.backends.engine, console.tenant
    user = await users.get_user(engine, tenant.id, user_id)
    devices = await users.list_devices(engine, tenant.id, user_id)
    recent = await notifications.list_notifications(
        engine, tenant, status=None, channel=None, user_id=user_id, limit=RECENT, cursor=None
    )
    return render(
        request,
        "users/detail.html",
        console,
        user=user,
        devices=devices.items,
        recent=recent,
        done=done,
    )
