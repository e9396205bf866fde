"""The console's session: a signed, expiring cookie (itsdangerous) holding a CSRF token
and, once signed in, the stored hash of the API key used to sign in.

The key itself never goes into the cookie. Every request resolves the hash through the
same API key cache as REST, so a revoked key's session ends at once, and the tenant is
exactly the one the key would act for over REST. The cookie is HttpOnly,
``SameSite=Strict``, limited to ``/console``, and ``Secure`` unless
``HERALD_CONSOLE_SECURE_COOKIE`` is off (``herald dev``). Every request that changes
anything must carry the session's CSRF token, as the ``csrf_token`` form field or the
``X-CSRF-Token`` header (htmx sends it from ``hx-headers``).

Signing in, and every page, needs a key with the ``admin`` scope; each page needs as
well the scope its REST twin needs (``api/deps.py``), so the console never lets a key do
more than it could over REST.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from pydantic import BaseModel, ValidationError

from api.backends import Backends
from api.deps import check_scopes
from api.ratelimit import over_budget, retry_after_header
from herald.settings import Settings
from herald.tenants import ApiKeyCache, TenantContext

COOKIE = "herald_console"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class SessionData(BaseModel):
    """What the cookie holds."""

    csrf: str
    # The signed-in API key's stored hash (SHA-256); None before sign-in.
    key: str | None = None


class SignInRequired(Exception):
    """No session, an expired one, or its key was revoked (``reason`` "revoked"): back to
    the sign-in page."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or "sign in")
        self.reason = reason


class CsrfRefused(Exception):
    """A request that changes something came without the session's CSRF token."""


# What signing in to the console takes.
CONSOLE_SCOPE = "admin"
NEEDS_ADMIN = "This API key cannot sign in to the console: it needs the 'admin' scope."


class ConsoleRateLimited(Exception):
    """The signed-in key is over its requests per minute."""

    def __init__(self, retry_after: str) -> None:
        super().__init__("rate limited")
        self.retry_after = retry_after


class ConsoleSessions:
    """Signs and reads session cookies; one per API process."""

    def __init__(self, settings: Settings) -> None:
        secret = (
            settings.console_secret.get_secret_value()
            if settings.console_secret is not None
            else secrets.token_urlsafe(32)  # sessions then last as long as this process
        )
        self._serializer = URLSafeTimedSerializer(secret, salt="herald-console-session")
        self.max_age = settings.console_session_seconds
        self.secure = settings.console_secure_cookie

    def read(self, request: Request) -> SessionData | None:
        """The request's session, or None if absent, tampered with or expired."""
        token = request.cookies.get(COOKIE)
        if not token:
            return None
        try:
            return SessionData.model_validate(self._serializer.loads(token, max_age=self.max_age))
        except (BadSignature, ValidationError, TypeError):
            return None

    def write(self, response: Response, session: SessionData) -> None:
        """Set the cookie (a new expiry each time)."""
        response.set_cookie(
            COOKIE,
            self._serializer.dumps(session.model_dump()),
            max_age=self.max_age,
            path="/console",
            secure=self.secure,
            httponly=True,
            samesite="strict",
        )

    def clear(self, response: Response) -> None:
        """Remove the cookie (sign-out)."""
        response.delete_cookie(
            COOKIE, path="/console", secure=self.secure, httponly=True, samesite="strict"
        )


def new_session(key_digest: str | None = None) -> SessionData:
    """A session with a fresh CSRF token (a new one at sign-in, against fixation)."""
    return SessionData(csrf=secrets.token_urlsafe(32), key=key_digest)


def sessions_of(request: Request) -> ConsoleSessions:
    """The process's session signer."""
    sessions: ConsoleSessions = request.app.state.console_sessions
    return sessions


async def visitor(request: Request) -> SessionData:
    """The session of whoever asks, signed in or not (a fresh one if none)."""
    return sessions_of(request).read(request) or new_session()


async def require_csrf(request: Request) -> None:
    """Refuse (403) a request that changes something without the session's CSRF token."""
    if request.method in _SAFE_METHODS:
        return
    session = sessions_of(request).read(request)
    given = request.headers.get(CSRF_HEADER)
    if given is None:
        form = await request.form()
        field = form.get(CSRF_FIELD)
        given = field if isinstance(field, str) else None
    if session is None or not given or not hmac.compare_digest(given, session.csrf):
        raise CsrfRefused()


@dataclass(frozen=True)
class Console:
    """A signed-in console request: who it acts for and with what."""

    tenant: TenantContext
    session: SessionData
    backends: Backends

    @property
    def csrf(self) -> str:
        """The token every form and htmx request of this page carries."""
        return self.session.csrf


async def signed_in(request: Request) -> Console:
    """The signed-in tenant, resolved through the API key cache on every request."""
    session = sessions_of(request).read(request)
    if session is None or session.key is None:
        raise SignInRequired()
    keys: ApiKeyCache = request.app.state.api_keys
    tenant = await keys.tenant_for_digest(session.key)
    if tenant is None:
        raise SignInRequired("revoked")
    if CONSOLE_SCOPE not in tenant.scopes:  # signing in refuses such a key; belt and braces
        raise SignInRequired("not-admin")
    refused = await over_budget(request, tenant, session.key)
    if refused is not None:
        raise ConsoleRateLimited(retry_after_header(refused[1]))
    backends: Backends = request.app.state.backends
    return Console(tenant=tenant, session=session, backends=backends)


def console_with(*any_of: str) -> Callable[..., Awaitable[Console]]:
    """A dependency: the signed-in console, if its key also has one of ``any_of``."""

    async def scoped_console(console: Annotated[Console, Depends(signed_in)]) -> Console:
        check_scopes(console.tenant, any_of)
        return console

    scoped_console.scopes = any_of  # type: ignore[attr-defined]  # read by the route audit
    return scoped_console


# The signed-in console (``admin``), for the pages about keys.
ConsoleDep = Annotated[Console, Depends(signed_in)]
# ... and, for every other page, the scope its REST twin needs.
ConsoleSendDep = Annotated[Console, Depends(console_with("send"))]
ConsoleReadDep = Annotated[Console, Depends(console_with("read"))]
ConsoleReadOrSendDep = Annotated[Console, Depends(console_with("send", "read"))]
ConsoleManageDep = Annotated[Console, Depends(console_with("manage"))]
VisitorDep = Annotated[SessionData, Depends(visitor)]
