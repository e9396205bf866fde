"""Topics: the tenant's topics with their subscriber counts, a new topic, and one
topic's page: its subscribers a page at a time, adding (one or many ids) and removing
them, each through the same service and request models as ``/v1/topics``."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import TypeAdapter, ValidationError

from api.console.forms import field_errors, user_ids
from api.console.rendering import render
from api.console.session import Console, ConsoleManageDep, ConsoleReadDep
from api.errors import ApiError
from api.schemas.topics import SubscribersIn, TopicIn
from api.services import topics
from herald.contracts import TopicKey, UserId

router = APIRouter(prefix="/topics")
PAGE_SIZE = 100
SUBSCRIBERS_PAGE_SIZE = 50
# The new-topic form's path: under "-/" so that no topic key (which may well be "new")
# loses its page to it.
NEW = "/-/new"
# Over REST the key and a removed user's id are path parameters, checked as these types.
_TOPIC_KEY = TypeAdapter(TopicKey)
_USER_ID = TypeAdapter(UserId)
_DONE = ("created", "renamed", "added", "removed")

Cursor = Annotated[str, Query(max_length=512)]


def _page_of(key: str) -> str:
    return f"/console/topics/{quote(key, safe='')}"


@router.get("", response_class=HTMLResponse)
async def list_page(request: Request, console: ConsoleReadDep, cursor: Cursor = "") -> Response:
    """Every topic by key, with how many users it has."""
    page = await topics.list_topics(
        console.backends.engine, console.tenant.id, limit=PAGE_SIZE, cursor=cursor or None
    )
    return render(request, "topics/list.html", console, page=page)


@router.get(NEW, response_class=HTMLResponse)
async def new_form(request: Request, console: ConsoleManageDep) -> Response:
    """The form for a new topic."""
    return render(request, "topics/new.html", console, values={"key": "", "name": ""}, errors={})


@router.post("", response_class=HTMLResponse)
async def create(
    request: Request,
    console: ConsoleManageDep,
    key: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
) -> Response:
    """What ``PUT /v1/topics/{key}`` does: create the topic (or rename it if the key is
    taken), then show its page."""
    errors: dict[str, str] = {}
    body = TopicIn()
    try:
        _TOPIC_KEY.validate_python(key)
    except ValidationError as err:
        errors |= field_errors(err, at=("key",))
    try:
        body = TopicIn.model_validate({"name": name} if name else {})
    except ValidationError as err:
        errors |= field_errors(err)
    status_code = 422
    if not errors:
        try:
            _, created = await topics.put_topic(
                console.backends.engine,
                console.tenant.id,
                key,
                body,
                max_topics=console.backends.settings.max_topics,
            )
        except ApiError as err:
            errors, status_code = field_errors(err, conflict="key"), err.status_code
        else:
            done = "created" if created else "renamed"
            return RedirectResponse(f"{_page_of(key)}?done={done}", status_code=303)
    values = {"key": key, "name": name}
    return render(
        request,
        "topics/new.html",
        console,
        status_code=status_code,
        values=values,
        errors=errors,
    )


async def _detail(
    request: Request,
    console: Console,
    key: str,
    *,
    cursor: str = "",
    done: str = "",
    added: int | None = None,
    typed_ids: str = "",
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    engine, tenant_id = console.backends.engine, console.tenant.id
    topic = await topics.get_topic(engine, tenant_id, key)
    subscribers = await topics.list_subscribers(
        engine, tenant_id, key, limit=SUBSCRIBERS_PAGE_SIZE, cursor=cursor or None
    )
    return render(
        request,
        "topics/detail.html",
        console,
        status_code=status_code,
        topic=topic,
        subscribers=subscribers,
        cursor=cursor,
        done=done if done in _DONE else "",
        added=added,
        typed_ids=typed_ids,
        errors=errors or {},
        page_of=_page_of(topic.key),
    )


@router.get("/{key}", response_class=HTMLResponse)
async def detail(
    request: Request,
    key: str,
    console: ConsoleReadDep,
    cursor: Cursor = "",
    done: Annotated[str, Query(max_length=16)] = "",
    added: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    """One topic: its name, its subscribers a page at a time (by user id), and the forms
    that add and remove them."""
    return await _detail(request, console, key, cursor=cursor, done=done, added=added)


@router.post("/{key}/subscribers", response_class=HTMLResponse)
async def subscribe(
    request: Request,
    key: str,
    console: ConsoleManageDep,
    user_ids_typed: Annotated[str, Form(alias="user_ids")] = "",
) -> Response:
    """What ``POST /v1/topics/{key}/subscribers`` does, for the ids typed one per line
    (or separated by spaces or commas)."""
    engine, tenant_id = console.backends.engine, console.tenant.id
    await topics.get_topic(engine, tenant_id, key)  # another tenant's: 404, whatever the form
    try:
        body = SubscribersIn.model_validate({"user_ids": user_ids(user_ids_typed)})
        added = await topics.subscribe(engine, tenant_id, key, body.user_ids)
    except (ValidationError, ApiError) as err:
        return await _detail(
            request,
            console,
            key,
            typed_ids=user_ids_typed,
            errors=field_errors(err),
            status_code=err.status_code if isinstance(err, ApiError) else 422,
        )
    return RedirectResponse(f"{_page_of(key)}?done=added&added={added.added}", status_code=303)


@router.post("/{key}/subscribers/remove", response_class=HTMLResponse)
async def unsubscribe(
    request: Request,
    key: str,
    console: ConsoleManageDep,
    user_id: Annotated[str, Form()] = "",
) -> Response:
    """What ``DELETE /v1/topics/{key}/subscribers/{user_id}`` does."""
    engine, tenant_id = console.backends.engine, console.tenant.id
    await topics.get_topic(engine, tenant_id, key)
    try:
        await topics.unsubscribe(engine, tenant_id, key, _USER_ID.validate_python(user_id))
    except ValidationError as err:
        errors: dict[str, Any] = field_errors(err, at=("user_id",))
        return await _detail(request, console, key, errors=errors, status_code=422)
    return RedirectResponse(f"{_page_of(key)}?done=removed", status_code=303)
