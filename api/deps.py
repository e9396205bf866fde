"""``Annotated`` dependencies the routes declare: settings, clients, the caller's tenant."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine

from api.errors import ApiError
from api.services.notifications import Backends
from herald.settings import Settings
from herald.tenants import ApiKeyCache, TenantContext

_bearer = HTTPBearer(auto_error=False, description="An API key from `herald apikey create`")


def _backends(request: Request) -> Backends:
    backends: Backends = request.app.state.backends
    return backends


def _engine(request: Request) -> AsyncEngine:
    return _backends(request).engine


def _settings(request: Request) -> Settings:
    return _backends(request).settings


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
    request.state.tenant = tenant.name
    return tenant


BackendsDep = Annotated[Backends, Depends(_backends)]
EngineDep = Annotated[AsyncEngine, Depends(_engine)]
SettingsDep = Annotated[Settings, Depends(_settings)]
TenantDep = Annotated[TenantContext, Depends(_tenant)]
