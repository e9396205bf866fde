"""``Annotated`` dependencies the routes declare: settings, clients, the caller's tenant
and what its API key may do.

Every ``/v1`` route declares the caller's tenant through one of the scoped aliases
(``SendTenantDep``, ``ReadTenantDep``, ``ReadOrSendTenantDep``, ``ManageTenantDep``,
``AdminTenantDep``), and every console page through their console twins
(``api/console/session.py``); both check with ``check_scopes``. The map:

- ``send``: submit (single, batch, broadcasts), cancel, resend, receipts;
- ``send`` or ``read``: list and read notifications and broadcasts (a sender reads what
  it sent);
- ``read``: every other read, and template previews (they render, and change nothing);
- ``manage``: changing users, templates, topics and webhooks; never a test key;
- ``admin``: API keys, and the console.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Final

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine

from api.backends import Backends
from api.errors import ApiError
from api.ratelimit import over_budget, retry_after_header
from herald.inbox import tokens as inbox_tokens
from herald.inbox.tokens import InboxUser
from herald.settings import Settings
from herald.tenants import ApiKeyCache, TenantContext, hash_key

_bearer = HTTPBearer(auto_error=False, description="An API key from `herald apikey create`")

# Scopes whose routes change what every key of the tenant shares; a test key may not.
_SHARED_CHANGES: Final = frozenset({"manage"})
TEST_KEY_MAY_NOT_CHANGE: Final = (
    "a test key may read but not change users, templates, topics or webhooks; use a live key"
)


# Dependencies are ``async def`` even where they do not await: FastAPI runs a plain
# ``def`` dependency in a worker thread, a thread hop per request for an attribute read.
def _backends_of(request: Request) -> Backends:
    backends: Backends = request.app.state.backends
    return backends


async def _backends(request: Request) -> Backends:
    return _backends_of(request)


async def _engine(request: Request) -> AsyncEngine:
    return _backends_of(request).engine


async def _settings(request: Request) -> Settings:
    return _backends_of(request).settings


async def _tenant(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TenantContext:
    if credentials is None or credentials.scheme.lower() != "bearer":
        # A key sent bare (or under another scheme) is there, just not readable as one.
        given = request.headers.get("authorization", "").strip()
        problem = "API key not sent as a bearer token" if given else "missing API key"
        raise ApiError(
            401,
            f"{problem}: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    keys: ApiKeyCache = request.app.state.api_keys
    digest = hash_key(credentials.credentials)
    tenant = await keys.tenant_for_digest(digest)
    if tenant is None:
        problem = "unknown or revoked API key"
        if credentials.credentials.startswith("eyJ"):  # a JWT: a user token, never a key
            problem += " (a user token is for the /v1/inbox routes only)"
        raise ApiError(401, problem, headers={"WWW-Authenticate": "Bearer"})
    await _within_rate_limit(request, digest, tenant)
    return tenant


async def _within_rate_limit(request: Request, key_digest: str, tenant: TenantContext) -> None:
    """429 with ``Retry-After`` once the tenant (or, on the default limit, this API key)
    has used its requests per minute."""
    refused = await over_budget(request, tenant, key_digest)
    if refused is None:
        return
    budget, wait = refused
    raise ApiError(
        429,
        f"rate limit of {budget.per_minute} requests per minute for this {budget.holder} "
        f"exceeded; retry in {wait:.1f}s",
        headers={
            "Retry-After": retry_after_header(wait),
            "X-RateLimit-Limit": str(budget.per_minute),
        },
    )


def check_scopes(tenant: TenantContext, any_of: tuple[str, ...]) -> None:
    """403 unless the key has one of ``any_of``, or if it is a test key and they change
    shared resources."""
    if not tenant.scopes.intersection(any_of):
        needed = " or ".join(f"'{scope}'" for scope in any_of)
        raise ApiError(403, f"this API key needs scope {needed}")
    if tenant.test and _SHARED_CHANGES.intersection(any_of):
        raise ApiError(403, TEST_KEY_MAY_NOT_CHANGE)


def require(*any_of: str) -> Callable[..., Awaitable[TenantContext]]:
    """A dependency: the caller's tenant, if its key has one of the scopes ``any_of``."""

    async def scoped_tenant(
        tenant: Annotated[TenantContext, Depends(_tenant)],
    ) -> TenantContext:
        check_scopes(tenant, any_of)
        return tenant

    scoped_tenant.scopes = any_of  # type: ignore[attr-defined]  # read by the route audit
    return scoped_tenant


BackendsDep = Annotated[Backends, Depends(_backends)]
EngineDep = Annotated[AsyncEngine, Depends(_engine)]
SettingsDep = Annotated[Settings, Depends(_settings)]
# Authenticated and within its rate limit, whatever the key's scopes: routes declare one
# of the scoped aliases below instead.
TenantDep = Annotated[TenantContext, Depends(_tenant)]
SendTenantDep = Annotated[TenantContext, Depends(require("send"))]
ReadTenantDep = Annotated[TenantContext, Depends(require("read"))]
ReadOrSendTenantDep = Annotated[TenantContext, Depends(require("send", "read"))]
ManageTenantDep = Annotated[TenantContext, Depends(require("manage"))]
AdminTenantDep = Annotated[TenantContext, Depends(require("admin"))]


async def _api_keys(request: Request) -> ApiKeyCache:
    keys: ApiKeyCache = request.app.state.api_keys
    return keys


ApiKeysDep = Annotated[ApiKeyCache, Depends(_api_keys)]


# --- The in-app inbox: end users, by user token (never an API key) -------------------

_user_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="UserToken",
    description="A user token from `POST /v1/inbox/tokens` (never an API key)",
)


async def _inbox_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_user_bearer)],
) -> InboxUser:
    """The user a token names (``Authorization: Bearer``, or ``?token=`` where a browser
    cannot set headers, as for ``EventSource``); 401 for anything else, API keys too."""
    token = credentials.credentials if credentials is not None else None
    token = token or request.query_params.get("token")
    challenge = {"WWW-Authenticate": 'Bearer realm="inbox"'}
    if not token:
        raise ApiError(
            401, "missing user token: send 'Authorization: Bearer <token>'", headers=challenge
        )
    try:
        async with _backends_of(request).engine.connect() as conn:
            return await inbox_tokens.authenticate(conn, token)
    except inbox_tokens.InvalidToken as err:
        raise ApiError(401, str(err), headers=challenge) from err


# What the route audit reads (tests/api/test_scopes.py): no API key scope, a user token.
_inbox_user.scopes = ("user token",)  # type: ignore[attr-defined]
# The caller of an inbox route: a tenant's user, by user token.
InboxUserDep = Annotated[InboxUser, Depends(_inbox_user)]
