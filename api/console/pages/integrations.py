"""Integrations: the tenant's own provider accounts in the order sends try them, each
with its last error; add one (its credentials typed once, never shown again), move it up
or down, disable or enable it, check its credentials, remove it."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from api.console.forms import WHOLE_FORM, field_errors, json_object
from api.console.rendering import render
from api.console.session import Console, ConsoleManageDep, ConsoleReadDep
from api.errors import ApiError, not_found
from api.schemas.integrations import CONFIGS, IntegrationIn, IntegrationPatch
from api.services import integrations

router = APIRouter(prefix="/integrations")


async def _listing(
    request: Request,
    console: Console,
    *,
    done: str = "",
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    found = await integrations.list_integrations(
        console.backends.engine, console.backends.settings, console.tenant
    )
    response = render(
        request,
        "integrations/list.html",
        console,
        status_code=status_code,
        integrations=found,
        done=done,
        errors=errors or {},
        providers=sorted(CONFIGS),
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as err:
        raise not_found("integration") from err


def _config_refusal(err: RequestValidationError) -> dict[str, str]:
    # Messages and where only: never the typed value, which may be a credential.
    return {
        "config": "; ".join(
            f"{'.'.join(str(part) for part in e['loc'][2:]) or 'config'}: {e['msg']}"
            for e in err.errors()
        )
    }


@router.get("", response_class=HTMLResponse)
async def list_page(
    request: Request, console: ConsoleReadDep, done: Annotated[str, Query(max_length=64)] = ""
) -> Response:
    """Every integration by channel, in the order sends try them."""
    return await _listing(request, console, done=done)


@router.post("", response_class=HTMLResponse)
async def create(
    request: Request,
    console: ConsoleManageDep,
    channel_provider: Annotated[str, Form(max_length=64)],
    config: Annotated[str, Form(max_length=65536)],
    name: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """A new integration, last of its channel."""
    channel, _, provider = channel_provider.partition(":")
    try:
        body = IntegrationIn.model_validate(
            {
                "channel": channel,
                "provider": provider,
                "name": name.strip() or None,
                "config": json_object(config, "config"),
            }
        )
        await integrations.create_integration(
            console.backends.engine, console.backends.settings, console.tenant, body
        )
    except ValidationError as err:
        errors = field_errors(err, renames={"channel": "channel_provider"})
        return await _listing(request, console, errors=errors, status_code=422)
    except RequestValidationError as err:
        return await _listing(request, console, errors=_config_refusal(err), status_code=422)
    except ApiError as err:
        errors = field_errors(err, renames={"provider": "channel_provider"})
        errors.setdefault(WHOLE_FORM, err.message)
        return await _listing(request, console, errors=errors, status_code=err.status_code)
    return RedirectResponse("/console/integrations?done=added+the+integration", status_code=303)


async def _patch(console: Console, integration_id: str, **changes: object) -> None:
    await integrations.update_integration(
        console.backends.engine,
        console.backends.settings,
        console.tenant,
        _id(integration_id),
        IntegrationPatch.model_validate(changes),
    )


@router.post("/{integration_id}/move")
async def move(
    integration_id: str,
    console: ConsoleManageDep,
    direction: Annotated[str, Form(pattern="^(up|down)$")],
) -> Response:
    """Swap the integration with its neighbour of the same channel."""
    found = await integrations.list_integrations(
        console.backends.engine, console.backends.settings, console.tenant
    )
    me = next((i for i in found if str(i.id) == integration_id), None)
    if me is None:
        raise not_found("integration")
    same = [i for i in found if i.channel == me.channel]
    at = same.index(me)
    other = at - 1 if direction == "up" else at + 1
    if 0 <= other < len(same):
        neighbour = same[other]
        if neighbour.priority == me.priority:  # equal priorities: make the order explicit
            for index, item in enumerate(same):
                await _patch(console, str(item.id), priority=index)
                item.priority = index
        await _patch(console, str(me.id), priority=neighbour.priority)
        await _patch(console, str(neighbour.id), priority=me.priority)
    return RedirectResponse("/console/integrations?done=moved", status_code=303)


@router.post("/{integration_id}/enabled")
async def set_enabled(
    integration_id: str, console: ConsoleManageDep, enabled: Annotated[bool, Form()]
) -> Response:
    """Enable or disable the integration."""
    await _patch(console, integration_id, enabled=enabled)
    word = "enabled" if enabled else "disabled"
    return RedirectResponse(f"/console/integrations?done={word}", status_code=303)


@router.post("/{integration_id}/check", response_class=HTMLResponse)
async def check(request: Request, integration_id: str, console: ConsoleManageDep) -> Response:
    """Ask the provider whether it takes the credentials (nothing is sent)."""
    answer = await integrations.check_integration(
        console.backends.engine, console.backends.settings, console.tenant, _id(integration_id)
    )
    verdict = "credentials accepted" if answer.ok else "check failed"
    return await _listing(request, console, done=f"{verdict}: {answer.detail}"[:300])


@router.post("/{integration_id}/delete")
async def delete(integration_id: str, console: ConsoleManageDep) -> Response:
    """Remove the integration."""
    await integrations.delete_integration(
        console.backends.engine, console.tenant, _id(integration_id)
    )
    return RedirectResponse("/console/integrations?done=removed+the+integration", status_code=303)
