"""Templates: the list, a new template (key, channel, locale, content: what
``POST /v1/templates`` takes), one key's versions, and the editor that saves a new
version with a live preview rendered from sample JSON as you type."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from api.console.forms import field_errors, typed
from api.console.rendering import render
from api.console.session import ConsoleManageDep, ConsoleReadDep
from api.errors import ApiError
from api.schemas.templates import PreviewIn, TemplateIn
from api.services import templates
from herald.contracts import Channel
from herald.templating import RenderLimits, required_variables

router = APIRouter(prefix="/templates")
PAGE_SIZE = 50
# The new-template form's path: under "-/" so that no template key (which may well be
# "new") loses its page to it.
NEW = "/-/new"
_NEW_DEFAULTS = {
    "key": "",
    "channel": "email",
    "locale": "en",
    "category": "transactional",
    "subject": "",
    "body": "",
}


@router.get("", response_class=HTMLResponse)
async def list_page(
    request: Request,
    console: ConsoleReadDep,
    cursor: Annotated[str, Query(max_length=512)] = "",
) -> Response:
    """Every template key with its channels, locales and latest versions."""
    page = await templates.list_templates(
        console.backends.engine, console.tenant.id, limit=PAGE_SIZE, cursor=cursor or None
    )
    return render(request, "templates/list.html", console, page=page)


@router.get(NEW, response_class=HTMLResponse)
async def new_form(request: Request, console: ConsoleManageDep) -> Response:
    """The form for a new template's version 1."""
    return render(
        request, "templates/new.html", console, values=_NEW_DEFAULTS, errors={}, channels=Channel
    )


@router.post("", response_class=HTMLResponse)
async def create(
    request: Request,
    console: ConsoleManageDep,
    key: Annotated[str, Form()] = "",
    channel: Annotated[str, Form()] = "",
    locale: Annotated[str, Form()] = "",
    category: Annotated[str, Form()] = "",
    subject: Annotated[str, Form()] = "",
    body: Annotated[str, Form()] = "",
) -> Response:
    """Create version 1 (what ``POST /v1/templates`` does), then open it in the editor;
    whatever the API would refuse shows next to its field."""
    values = {
        "key": key,
        "channel": channel,
        "locale": locale,
        "category": category,
        "subject": subject,
        "body": body,
    }
    settings = console.backends.settings
    try:
        saved = await templates.save_version(
            console.backends.engine,
            console.tenant.id,
            TemplateIn.model_validate(typed(values)),
            first=True,
            max_templates=settings.max_templates,
            limits=RenderLimits.of(settings),
        )
    except (ValidationError, ApiError) as err:
        return render(
            request,
            "templates/new.html",
            console,
            status_code=err.status_code if isinstance(err, ApiError) else 422,
            values=values,
            errors=field_errors(err, conflict="key"),
            channels=Channel,
        )
    return RedirectResponse(
        f"/console/templates/{saved.key}?channel={saved.channel.value}&locale={saved.locale}"
        f"&saved={saved.version}",
        status_code=303,
    )


@router.get("/{key}", response_class=HTMLResponse)
async def editor(
    request: Request,
    key: str,
    console: ConsoleReadDep,
    channel: Annotated[str, Query(max_length=8)] = "",
    locale: Annotated[str, Query(max_length=35)] = "",
    saved: Annotated[int | None, Query()] = None,
) -> Response:
    """The latest version of one channel and locale of a template, ready to edit."""
    versions = await templates.get_versions(console.backends.engine, console.tenant.id, key, None)
    chosen = next(
        (
            version
            for version in versions.versions
            if (not channel or version.channel.value == channel)
            and (not locale or version.locale == locale)
        ),
        versions.versions[0],
    )
    return render(
        request,
        "templates/editor.html",
        console,
        key=key,
        versions=versions.versions,
        current=chosen,
        subject=chosen.subject or "",
        body=chosen.body,
        sample=_starter_sample(chosen.subject or "", chosen.body),
        saved=saved,
        problem=None,
    )


def _starter_sample(subject: str, body: str) -> str:
    """Sample data with each variable the version needs standing for itself, so the
    editor opens on a rendered preview rather than on a missing variable."""
    needed = required_variables(subject) | required_variables(body)
    return json.dumps({name: name for name in sorted(needed)})


def _sample(sample: str) -> dict[str, Any]:
    """The sample data typed into the editor, or a 422 naming it."""
    try:
        data = json.loads(sample or "{}")
    except ValueError as err:
        raise ApiError(
            422, f"sample data is not JSON: {err}", field="sample", where="form"
        ) from err
    if not isinstance(data, dict):
        raise ApiError(422, "sample data must be a JSON object", field="sample", where="form")
    return data


@router.post("/{key}/preview", response_class=HTMLResponse)
async def preview(
    request: Request,
    key: str,
    console: ConsoleReadDep,
    channel: Annotated[Channel, Form()],
    locale: Annotated[str, Form(max_length=35)],
    body: Annotated[str, Form(max_length=32_768)] = "",
    subject: Annotated[str, Form(max_length=998)] = "",
    sample: Annotated[str, Form(max_length=65_536)] = "{}",
) -> Response:
    """The draft rendered with the sample data, or what stops it rendering (with the
    missing variable's name); the same service as ``POST /v1/templates/{key}/preview``."""
    try:
        rendered = await templates.preview(
            console.backends.engine,
            console.tenant.id,
            key,
            PreviewIn(
                channel=channel,
                locale=locale or None,
                data=_sample(sample),
                subject=subject or None,
                body=body or " ",
            ),
            limits=RenderLimits.of(console.backends.settings),
        )
    except ApiError as err:
        return render(
            request, "templates/preview.html", console, rendered=None, problem=err.message
        )
    except ValidationError as err:
        problem = "; ".join(error["msg"] for error in err.errors())
        return render(request, "templates/preview.html", console, rendered=None, problem=problem)
    return render(request, "templates/preview.html", console, rendered=rendered, problem=None)


@router.post("/{key}", response_class=HTMLResponse)
async def save(
    request: Request,
    key: str,
    console: ConsoleManageDep,
    channel: Annotated[Channel, Form()],
    locale: Annotated[str, Form(max_length=35)],
    body: Annotated[str, Form(max_length=32_768)],
    subject: Annotated[str, Form(max_length=998)] = "",
    sample: Annotated[str, Form(max_length=65_536)] = "{}",
) -> Response:
    """Save the draft as the next version (what ``PUT /v1/templates/{key}`` does)."""
    engine, tenant_id = console.backends.engine, console.tenant.id
    try:
        saved = await templates.save_version(
            engine,
            tenant_id,
            TemplateIn(key=key, channel=channel, locale=locale, subject=subject or None, body=body),
            first=False,
            max_templates=console.backends.settings.max_templates,
            limits=RenderLimits.of(console.backends.settings),
        )
    except (ApiError, ValidationError) as err:
        problem = (
            err.message
            if isinstance(err, ApiError)
            else "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        )
        versions = await templates.get_versions(engine, tenant_id, key, None)
        current = next(
            (v for v in versions.versions if v.channel is channel and v.locale == locale),
            versions.versions[0],
        )
        return render(
            request,
            "templates/editor.html",
            console,
            status_code=422,
            key=key,
            versions=versions.versions,
            current=current,
            subject=subject,
            body=body,
            sample=sample,
            saved=None,
            problem=problem,
        )
    return RedirectResponse(
        f"/console/templates/{key}?channel={saved.channel.value}&locale={saved.locale}"
        f"&saved={saved.version}",
        status_code=303,
    )
