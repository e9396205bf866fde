"""Webhooks: the tenant's endpoints (URL, events, whether disabled), a new one (its
signing secret shown on the answer to its creation only), removal, and one endpoint's
recent deliveries, refreshing themselves."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from api.console.rendering import render
from api.console.session import Console, ConsoleManageDep, ConsoleReadDep
from api.errors import ApiError, not_found
from api.schemas.webhooks import WebhookCreated, WebhookIn
from api.services import webhooks
from herald.webhooks import ALL_EVENTS

router = APIRouter(prefix="/webhooks")
DELIVERIES_SHOWN = 100


async def _listing(
    request: Request,
    console: Console,
    *,
    created: WebhookCreated | None = None,
    done: str = "",
    refused: str | None = None,
    status_code: int = 200,
) -> Response:
    endpoints = await webhooks.list_webhooks(console.backends.engine, console.tenant)
    return render(
        request,
        "webhooks/list.html",
        console,
        status_code=status_code,
        endpoints=endpoints,
        created=created,
        done=done,
        refused=refused,
        all_events=ALL_EVENTS,
    )


def _endpoint_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as err:
        raise not_found(f"webhook {value}") from err


def _refusal(err: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in err.errors()
    )


@router.get("", response_class=HTMLResponse)
async def list_page(
    request: Request, console: ConsoleReadDep, done: Annotated[str, Query(max_length=64)] = ""
) -> Response:
    """Every endpoint with its events and state, and the form for a new one."""
    return await _listing(request, console, done=done)


@router.post("", response_class=HTMLResponse)
async def create(
    request: Request,
    console: ConsoleManageDep,
    url: Annotated[str, Form(max_length=2048)],
    events: Annotated[list[str] | None, Form()] = None,
) -> Response:
    """A new endpoint; its secret is on this answer only (never in a URL, never again)."""
    try:
        body = WebhookIn(url=url.strip(), events=events or [ALL_EVENTS])
        created = await webhooks.create_webhook(
            console.backends.engine, console.backends.settings, console.tenant, body
        )
    except ValidationError as err:
        return await _listing(request, console, refused=_refusal(err), status_code=422)
    except ApiError as err:
        return await _listing(request, console, refused=err.message, status_code=err.status_code)
    response = await _listing(request, console, created=created, status_code=201)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/{endpoint_id}", response_class=HTMLResponse)
async def detail(request: Request, endpoint_id: str, console: ConsoleReadDep) -> Response:
    """One endpoint and what was delivered to it, newest first."""
    identifier = _endpoint_id(endpoint_id)
    endpoint = await webhooks.get_webhook(console.backends.engine, console.tenant, identifier)
    deliveries = await webhooks.list_deliveries(
        console.backends.engine, console.tenant, identifier, limit=DELIVERIES_SHOWN
    )
    return render(
        request, "webhooks/detail.html", console, endpoint=endpoint, deliveries=deliveries
    )


@router.get("/{endpoint_id}/deliveries", response_class=HTMLResponse)
async def deliveries(request: Request, endpoint_id: str, console: ConsoleReadDep) -> Response:
    """The deliveries table alone, for the page's refresh."""
    identifier = _endpoint_id(endpoint_id)
    found = await webhooks.list_deliveries(
        console.backends.engine, console.tenant, identifier, limit=DELIVERIES_SHOWN
    )
    return render(
        request,
        "webhooks/deliveries.html",
        console,
        endpoint_id=identifier,
        deliveries=found,
    )


@router.post("/{endpoint_id}/delete")
async def delete(request: Request, endpoint_id: str, console: ConsoleManageDep) -> Response:
    """Remove the endpoint; nothing more is sent to it."""
    identifier = _endpoint_id(endpoint_id)
    await webhooks.delete_webhook(console.backends.engine, console.tenant, identifier)
    return RedirectResponse("/console/webhooks?done=deleted+the+endpoint", status_code=303)
