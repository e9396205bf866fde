"""Server-side rendering of console pages (jinja2, autoescaped) with what every page
shows: the navigation, the tenant, the CSRF token for forms and htmx."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from api.console.nav import NAV
from api.console.session import CSRF_FIELD, CSRF_HEADER, Console, ConsoleReadOrSendDep
from api.errors import ApiError
from herald.contracts import Status

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


TEMPLATES.env.filters["when"] = _when
TEMPLATES.env.globals.update(
    nav=NAV,
    csrf_field=CSRF_FIELD,
    csrf_header=CSRF_HEADER,
    statuses=[status.value for status in Status],
)


def render(
    request: Request,
    template: str,
    console: Console | None = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """A page or fragment; ``console`` is None on pages shown before sign-in."""
    path = request.url.path.removeprefix(request.scope.get("root_path", ""))
    current = next((section.path for section in NAV if path.startswith(section.path)), None)
    values = {
        "console": console,
        "tenant": console.tenant if console else None,
        "csrf": console.csrf if console else context.pop("csrf", ""),
        "current": current,
        "refresh_seconds": (console.backends.settings.console_refresh_seconds if console else None),
        **context,
    }
    return TEMPLATES.TemplateResponse(
        request, template, values, status_code=status_code, headers=headers
    )


# What a page that refreshes itself shows, from the id in its URL (404 if it is none of
# the tenant's).
Loader = Callable[[Console, str], Awaitable[dict[str, Any]]]


def add_live_page(router: APIRouter, folder: str, load: Loader, what: str) -> None:
    """Add one item's page (``/{id}``, ``{folder}/detail.html``) and the part of it that
    refreshes itself (``/{id}/live``, ``{folder}/live.html``) to ``router``. The two show
    the same values; the part comes without its polling trigger once ``what`` has
    ended, so the refresh stops. Both need the ``send`` or ``read`` scope (the items
    are notifications and broadcasts)."""

    async def detail(
        request: Request,
        item_id: str,
        console: ConsoleReadOrSendDep,
        done: Annotated[str, Query(max_length=32)] = "",
    ) -> Response:
        values = await load(console, item_id)
        return render(request, f"{folder}/detail.html", console, done=done, **values)

    async def live(request: Request, item_id: str, console: ConsoleReadOrSendDep) -> Response:
        values = await load(console, item_id)
        return render(request, f"{folder}/live.html", console, **values)

    router.add_api_route(
        "/{item_id}",
        detail,
        methods=["GET"],
        response_class=HTMLResponse,
        name=f"{folder}-detail",
        description=f"One {what}'s page.",
    )
    router.add_api_route(
        "/{item_id}/live",
        live,
        methods=["GET"],
        response_class=HTMLResponse,
        name=f"{folder}-live",
        description=f"The refreshing part of one {what}'s page.",
    )


async def act_on_item(
    request: Request,
    console: Console,
    folder: str,
    load: Loader,
    item_id: str,
    act: Callable[[], Awaitable[Any]],
    done: str,
) -> Response:
    """Do ``act`` (a cancel, a resend) to one item of ``folder`` and go back to its page,
    which then says ``done``; if it cannot be done now (409) the page shows why."""
    try:
        await act()
    except ApiError as err:
        if err.status_code != 409:
            raise
        values = await load(console, item_id)
        return render(
            request,
            f"{folder}/detail.html",
            console,
            status_code=409,
            refused=err.message,
            done="",
            **values,
        )
    return RedirectResponse(f"/console/{folder}/{item_id}?done={done}", status_code=303)
