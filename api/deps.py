"""``Annotated`` dependencies the routes declare: settings, clients, the caller's tenant."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine

from api.backends import Backends
from api.errors import ApiError
from api.ratelimit import RateLimiter, retry_after_header
from herald.tenants import ApiKeyCache, TenantContext, hash_key

_bearer = HTTPBearer(auto_error=False, description="An API key from `herald apikey create`")


# Dependencies are ``async def`` even where they do not await: FastAPI runs a plain
# ``def`` dependency in a worker thread, a thread hop per request for an attribute read.
def _backends_of(request: Request) -> Backends:
    backends: Backends = request.app.state.backends
    return backends


async def _backends(request: Request) -> Backends:
    return _backends_of(request)


async def _engine(request: Request) -> AsyncEngine:
    return _backends_of(request).engine


async def _tenant(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TenantContext:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(
            401,
            "missing API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    keys: ApiKeyCache = request.app.state.api_keys
    tenant = await keys.tenant_for(credentials.credentials)
    if tenant is None:
        raise ApiError(401, "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    await _within_rate_limit(request, credentials.credentials, tenant)
    return tenant


async def _within_rate_limit(request: Request, key: str, tenant: TenantContext) -> None:
    """429 with ``Retry-After`` once this API key has used its requests per minute."""
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is None:
        return
    default = _backends_of(request).settings.rate_limit_per_minute
    per_minute = tenant.rate_limit_per_minute or default
    wait = await limiter.retry_after(hash_key(key), per_minute)
    if wait is not None:
        raise ApiError(
            429,
            f"rate limit of {per_minute} requests per minute for this API key exceeded; "
            f"retry in {wait:.1f}s",
            headers={"Retry-After": retry_after_header(wait), "X-RateLimit-Limit": str(per_minute)},
        )


BackendsDep = Annotated[Backends, Depends(_backends)]
EngineDep = Annotated[AsyncEngine, Depends(_engine)]
TenantDep = Annotated[TenantContext, Depends(_tenant)]


async def _api_keys(request: Request) -> ApiKeyCache:
    keys: ApiKeyCache = request.app.state.api_keys
    return keys


ApiKeysDep = Annotated[ApiKeyCache, Depends(_api_keys)]
