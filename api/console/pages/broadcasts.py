"""Broadcasts: the list (newest first, with progress), a new broadcast (audience,
template, data; then a review with a sample rendered for one recipient and the audience's
size, and a confirmation that starts it), and one broadcast's page, whose progress
refreshes itself while it runs, with its cancel button.

A new broadcast goes through the request model and service of ``POST /v1/broadcasts``
and its sample through those of ``POST /v1/templates/{key}/preview``.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from api.console.forms import field_errors, json_object, typed, user_ids
from api.console.rendering import act_on_item, add_live_page, render
from api.console.session import Console, ConsoleReadOrSendDep, ConsoleSendDep
from api.errors import ApiError, not_found
from api.schemas.broadcasts import BroadcastIn
from api.schemas.templates import PreviewIn
from api.services import broadcasts, templates, topics, users
from herald import broadcasts as fan_out
from herald.contracts import BroadcastStatus, Channel
from herald.templating import RenderLimits

router = APIRouter(prefix="/broadcasts")
PAGE_SIZE = 50
# The new-broadcast form's path, beside the other sections' "-/new".
NEW = "/-/new"
# Topics and templates offered as suggestions in the form.
SUGGESTED = 100
AUDIENCES = ("topic", "user_ids", "all_users")
# Where in the form each part of ``BroadcastIn`` is typed.
_FORM_FIELDS = {
    "audience.topic": "topic",
    "audience.user_ids": "user_ids",
    "audience.all_users": "audience",
}
_RECIPIENT_FIELDS = frozenset({"data", "locale"})


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


def _values(
    channel: str, template: str, locale: str, audience: str, topic: str, ids: str, data: str
) -> dict[str, str]:
    return {
        "channel": channel,
        "template": template,
        "locale": locale,
        "audience": audience,
        "topic": topic,
        "user_ids": ids,
        "data": data,
    }


def _request(values: dict[str, str]) -> BroadcastIn:
    """The ``POST /v1/broadcasts`` body the form describes (ValidationError or ApiError
    as the API would refuse it)."""
    data = json_object(values["data"], "data")
    audiences: dict[str, dict[str, Any]] = {
        "topic": {"topic": values["topic"]},
        "user_ids": {"user_ids": user_ids(values["user_ids"])},
        "all_users": {"all_users": True},
    }
    audience = audiences.get(values["audience"], {})
    fields = typed({key: values[key] for key in ("channel", "template", "locale")})
    return BroadcastIn.model_validate(fields | {"data": data, "audience": audience})


def _errors(err: ValidationError | ApiError) -> dict[str, str]:
    return field_errors(err, renames=_FORM_FIELDS, fields=_RECIPIENT_FIELDS)


async def _form(
    request: Request,
    console: Console,
    values: dict[str, str],
    *,
    errors: dict[str, str] | None = None,
    review: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    engine, tenant = console.backends.engine, console.tenant
    suggested_topics: list[str] = []
    suggested_templates: list[str] = []
    if "read" in tenant.scopes:  # listing them is a read over REST
        found_topics = await topics.list_topics(engine, tenant.id, limit=SUGGESTED, cursor=None)
        found_templates = await templates.list_templates(
            engine, tenant.id, limit=SUGGESTED, cursor=None
        )
        suggested_topics = [topic.key for topic in found_topics.items]
        suggested_templates = [template.key for template in found_templates.items]
    return render(
        request,
        "broadcasts/new.html",
        console,
        status_code=status_code,
        values=values,
        errors=errors or {},
        review=review,
        channels=Channel,
        audiences=AUDIENCES,
        suggested_topics=suggested_topics,
        suggested_templates=suggested_templates,
    )


async def _sample_recipient(console: Console, body: BroadcastIn) -> str | None:
    """The first recipient of the audience as it is now (by user id), if any."""
    engine, tenant_id = console.backends.engine, console.tenant.id
    if body.audience.user_ids:
        return min(body.audience.user_ids)
    if body.audience.topic is not None:
        page = await topics.list_subscribers(
            engine, tenant_id, body.audience.topic, limit=1, cursor=None
        )
        return page.items[0] if page.items else None
    everyone = await users.list_users(engine, tenant_id, search=None, limit=1, cursor=None)
    return everyone.items[0].id if everyone.items else None


async def _review(console: Console, body: BroadcastIn) -> dict[str, Any]:
    """What the confirmation shows: the audience's size now, and the message rendered
    for its first recipient (in their locale unless the broadcast names one), exactly
    as ``POST /v1/templates/{key}/preview`` renders it. ApiError naming the field at
    fault for an unknown topic or template, or data the template cannot render with."""
    engine, tenant_id = console.backends.engine, console.tenant.id
    if body.audience.topic is not None:
        try:
            await topics.get_topic(engine, tenant_id, body.audience.topic)
        except ApiError as err:
            raise ApiError(422, err.message, field="topic") from err
    async with engine.connect() as conn:
        total = await fan_out.audience_size(conn, tenant_id, body.audience)
    recipient = await _sample_recipient(console, body)
    locale = body.locale
    if recipient is not None and locale is None:
        try:
            locale = (await users.get_user(engine, tenant_id, recipient)).locale
        except ApiError:  # not a user (yet): their notification will be suppressed
            locale = None
    try:
        rendered = await templates.preview(
            engine,
            tenant_id,
            body.template,
            PreviewIn(channel=body.channel, locale=locale, data=body.data),
            limits=RenderLimits.of(console.backends.settings),
        )
    except ApiError as err:
        if err.status_code == 404:  # no version of it on this channel
            raise ApiError(422, err.message, field="template") from err
        raise
    return {"total": total, "recipient": recipient, "rendered": rendered}


@router.get(NEW, response_class=HTMLResponse)
async def new_form(
    request: Request,
    console: ConsoleSendDep,
    topic: Annotated[str, Query(max_length=128)] = "",
) -> Response:
    """The form for a new broadcast (to ``topic``, when the topic's page links here)."""
    values = _values("email", "", "", "topic", topic, "", "{}")
    return await _form(request, console, values)


@router.post("/-/review", response_class=HTMLResponse)
async def review(
    request: Request,
    console: ConsoleSendDep,
    channel: Annotated[str, Form()] = "",
    template: Annotated[str, Form()] = "",
    locale: Annotated[str, Form()] = "",
    audience: Annotated[str, Form()] = "",
    topic: Annotated[str, Form()] = "",
    ids: Annotated[str, Form(alias="user_ids")] = "",
    data: Annotated[str, Form()] = "{}",
) -> Response:
    """Check the broadcast as ``POST /v1/broadcasts`` would, and show the sample and the
    audience's size with the button that starts it; nothing is sent yet."""
    values = _values(channel, template, locale, audience, topic, ids, data)
    try:
        body = _request(values)
        shown = await _review(console, body)
    except (ValidationError, ApiError) as err:
        status_code = err.status_code if isinstance(err, ApiError) else 422
        return await _form(request, console, values, errors=_errors(err), status_code=status_code)
    # The confirmation's own Idempotency-Key: posting it twice starts one broadcast.
    shown["confirmation"] = secrets.token_urlsafe(18)
    return await _form(request, console, values, review=shown)


@router.post("", response_class=HTMLResponse)
async def create(
    request: Request,
    console: ConsoleSendDep,
    channel: Annotated[str, Form()] = "",
    template: Annotated[str, Form()] = "",
    locale: Annotated[str, Form()] = "",
    audience: Annotated[str, Form()] = "",
    topic: Annotated[str, Form()] = "",
    ids: Annotated[str, Form(alias="user_ids")] = "",
    data: Annotated[str, Form()] = "{}",
    confirmation: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Start the reviewed broadcast (what ``POST /v1/broadcasts`` does, with the review's
    token as its Idempotency-Key), then show its progress. Without a review's token this
    is the review."""
    if not confirmation:
        return await review(request, console, channel, template, locale, audience, topic, ids, data)
    values = _values(channel, template, locale, audience, topic, ids, data)
    try:
        outcome = await broadcasts.create_broadcast(
            _backends(console),
            console.tenant,
            _request(values),
            idempotency_key=f"console:{confirmation}",
            request_id=getattr(request.state, "request_id", None),
        )
    except (ValidationError, ApiError) as err:
        status_code = err.status_code if isinstance(err, ApiError) else 422
        return await _form(request, console, values, errors=_errors(err), status_code=status_code)
    return RedirectResponse(
        f"/console/broadcasts/{outcome.broadcast.id}?done=started", status_code=303
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
