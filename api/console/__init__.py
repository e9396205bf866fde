"""Herald's web console at ``/console``: server-rendered pages (jinja2 + htmx, Pico CSS,
all served from this package) over the same service layer as the REST API.

It is an application of its own mounted into the API, so its errors are pages rather
than JSON, while it shares the API's clients, key cache and middleware.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import State
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.service import RPCError

from api.console.pages import ROUTERS
from api.console.rendering import render
from api.console.session import (
    ConsoleRateLimited,
    ConsoleSessions,
    CsrfRefused,
    SignInRequired,
    require_csrf,
)
from api.errors import ApiError
from herald.settings import Settings

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
# Scripts and styles from this origin only; images anywhere (an email preview's own);
# no framing of the console, forms post only to it.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src * data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
    "object-src 'none'"
)
_SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


class _SecurityHeaders:
    """Adds the console's security headers to every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).extend(_SECURITY_HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def _install_error_pages(console: FastAPI) -> None:
    @console.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        target = "/console/sign-in" + (f"?reason={exc.reason}" if exc.reason else "")
        if _htmx(request):  # a refresh in the page: make the whole page go
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @console.exception_handler(CsrfRefused)
    async def _csrf(request: Request, exc: CsrfRefused) -> Response:
        return render(
            request,
            "error.html",
            status_code=403,
            title="Refused",
            message="This form came without a valid CSRF token. Reload the page and try again.",
        )

    @console.exception_handler(ConsoleRateLimited)
    async def _limited(request: Request, exc: ConsoleRateLimited) -> Response:
        return render(
            request,
            "error.html",
            status_code=429,
            headers={"Retry-After": exc.retry_after},
            title="Too many requests",
            message=f"This API key is over its rate limit; try again in {exc.retry_after} s.",
        )

    @console.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        titles = {404: "Not found", 409: "Conflict", 422: "Cannot do that", 403: "Refused"}
        return render(
            request,
            "error.html",
            status_code=exc.status_code,
            title=titles.get(exc.status_code, "Error"),
            message=exc.message,
        )

    @console.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        message = "; ".join(
            f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg', '')}"
            for error in exc.errors()
        )
        return render(
            request, "error.html", status_code=422, title="Cannot do that", message=message
        )

    @console.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return render(
            request,
            "error.html",
            status_code=exc.status_code,
            title="Error",
            message=str(exc.detail),
        )

    @console.exception_handler(RPCError)
    async def _temporal(request: Request, exc: RPCError) -> Response:
        log.error("temporal unavailable: %s", exc)
        return render(
            request,
            "error.html",
            status_code=503,
            headers={"Retry-After": "5"},
            title="Temporal is unavailable",
            message="Nothing was changed; try again in a moment.",
        )

    @console.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected console error")
        return render(
            request,
            "error.html",
            status_code=500,
            title="Something went wrong",
            message="The error has been logged.",
        )


def create_console(settings: Settings, state: State) -> FastAPI:
    """The console application, sharing the API's ``state`` (clients, key cache)."""
    console = FastAPI(
        title="Herald console",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(require_csrf)],
    )
    console.state = state
    state.console_sessions = ConsoleSessions(settings)
    console.mount("/static", StaticFiles(directory=STATIC), name="static")
    for router in ROUTERS:
        console.include_router(router)
    _install_error_pages(console)
    console.add_middleware(_SecurityHeaders)
    return console
