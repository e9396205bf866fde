"""Server-side rendering of console pages (jinja2, autoescaped) with what every page
shows: the navigation, the tenant, the CSRF token for forms and htmx."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from api.console.nav import NAV
from api.console.session import CSRF_FIELD, CSRF_HEADER, Console
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
