"""API keys: the tenant's keys with their scopes, a new one (its kind and scopes picked
here; shown once, on the answer to its creation), and revocation, which the REST API
refuses at once."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.console.rendering import render
from api.console.session import Console, ConsoleDep
from api.errors import ApiError, not_found
from api.schemas.api_keys import ApiKeyScope
from api.services import api_keys
from herald.db import API_KEY_SCOPES
from herald.tenants import ALL_SCOPES

router = APIRouter(prefix="/keys")
PAGE_SIZE = 100


async def _listing(
    request: Request,
    console: Console,
    *,
    created: object = None,
    done: str = "",
    refused: str | None = None,
    status_code: int = 200,
    cursor: str = "",
) -> Response:
    page = await api_keys.list_keys(
        console.backends.engine, console.tenant, limit=PAGE_SIZE, cursor=cursor or None
    )
    return render(
        request,
        "keys/list.html",
        console,
        status_code=status_code,
        page=page,
        created=created,
        done=done,
        refused=refused,
        scopes=API_KEY_SCOPES,
    )


@router.get("", response_class=HTMLResponse)
async def list_page(
    request: Request,
    console: ConsoleDep,
    done: Annotated[str, Query(max_length=64)] = "",
    cursor: Annotated[str, Query(max_length=512)] = "",
) -> Response:
    """Prefix, kind, scopes, creation and last use of every key, and the form for a new
    one."""
    return await _listing(request, console, done=done, cursor=cursor)


@router.post("", response_class=HTMLResponse)
async def create(
    request: Request,
    console: ConsoleDep,
    kind: Annotated[Literal["live", "test"], Form()],
    scopes: Annotated[list[ApiKeyScope] | None, Form(max_length=4)] = None,
    scopes_offered: Annotated[bool, Form()] = False,
) -> Response:
    """A new key with the scopes ticked, shown on this answer only (never in a URL, never
    again). A post without the form's scope boxes gets all four, as over REST."""
    if not scopes and scopes_offered:  # the boxes were there, and all were unticked
        return await _listing(
            request, console, refused="Tick at least one scope for the new key.", status_code=422
        )
    try:
        created = await api_keys.create_key(
            console.backends.engine,
            console.tenant,
            kind,
            frozenset(scopes) if scopes else ALL_SCOPES,
            max_live_keys=console.backends.settings.max_api_keys,
        )
    except ApiError as err:
        return await _listing(request, console, refused=err.message, status_code=err.status_code)
    response = await _listing(request, console, created=created, status_code=201)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/{key_id}/revoke")
async def revoke(request: Request, key_id: str, console: ConsoleDep) -> Response:
    """Revoke a key; signing in with it, or calling the API with it, fails from now on."""
    try:
        identifier = uuid.UUID(key_id)
    except ValueError as err:
        raise not_found(f"API key {key_id}") from err
    keys = request.app.state.api_keys
    try:
        revoked = await api_keys.revoke_key(
            console.backends.engine, keys, console.tenant, identifier
        )
    except ApiError as err:
        if err.status_code != 403:
            raise
        return await _listing(request, console, refused=err.message, status_code=403)
    return RedirectResponse(f"/console/keys?done=revoked+{revoked.prefix}", status_code=303)
