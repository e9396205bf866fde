"""Signing in with an API key and signing out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.console.rendering import render
from api.console.session import (
    CONSOLE_SCOPE,
    NEEDS_ADMIN,
    VisitorDep,
    new_session,
    sessions_of,
)
from herald.tenants import ApiKeyCache, hash_key

router = APIRouter()
# Why the sign-in page is shown, by the code a redirect to it names.
REASONS = {
    "revoked": "The API key of your session was revoked. Sign in with another key.",
    "signed-out": "You have signed out.",
    "not-admin": NEEDS_ADMIN,
}


def _sign_in_page(request: Request, csrf: str, message: str | None, status_code: int) -> Response:
    response = render(request, "sign_in.html", status_code=status_code, csrf=csrf, message=message)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/", include_in_schema=False)
async def home() -> Response:
    """The console opens on the overview."""
    return RedirectResponse("/console/overview", status_code=303)


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page(request: Request, session: VisitorDep, reason: str = "") -> Response:
    """The sign-in form (its CSRF token comes with a fresh, signed-out session)."""
    anonymous = new_session() if session.key else session
    response = _sign_in_page(request, anonymous.csrf, REASONS.get(reason), 200)
    sessions_of(request).write(response, anonymous)
    return response


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(
    request: Request, session: VisitorDep, api_key: Annotated[str, Form(max_length=256)]
) -> Response:
    """Check the key; a valid one with the ``admin`` scope starts a session with a new
    CSRF token."""
    keys: ApiKeyCache = request.app.state.api_keys
    digest = hash_key(api_key.strip())
    tenant = await keys.tenant_for_digest(digest)
    if tenant is None:
        return _sign_in_page(request, session.csrf, "Unknown or revoked API key.", 401)
    if CONSOLE_SCOPE not in tenant.scopes:
        return _sign_in_page(request, session.csrf, NEEDS_ADMIN, 403)
    response = RedirectResponse("/console/overview", status_code=303)
    sessions_of(request).write(response, new_session(digest))
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    """End the session."""
    response = RedirectResponse("/console/sign-in?reason=signed-out", status_code=303)
    sessions_of(request).clear(response)
    return response
