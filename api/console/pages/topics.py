"""Topics: the tenant's topics with their subscriber counts, and one topic's page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from api.console.rendering import render
from api.console.session import ConsoleReadDep
from api.services import topics

router = APIRouter(prefix="/topics")
PAGE_SIZE = 100


@router.get("", response_class=HTMLResponse)
async def list_page(
    request: Request, console: ConsoleReadDep, cursor: Annotated[str, Query(max_length=512)] = ""
) -> Response:
    """Every topic by key, with how many users it has."""
    page = await topics.list_topics(
        console.backends.engine, console.tenant.id, limit=PAGE_SIZE, cursor=cursor or None
    )
    return render(request, "topics/list.html", console, page=page)


@router.get("/{key}", response_class=HTMLResponse)
async def detail(request: Request, key: str, console: ConsoleReadDep) -> Response:
    """One topic: its name and subscriber count."""
    topic = await topics.get_topic(console.backends.engine, console.tenant.id, key)
    return render(request, "topics/detail.html", console, topic=topic)
