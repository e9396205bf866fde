"""``/v1/api-keys``: the tenant's keys; a new one is shown once, a revoked one is refused
at once. Needs the ``admin`` scope."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import AdminTenantDep, ApiKeysDep, EngineDep, SettingsDep
from api.schemas.api_keys import ApiKeyCreated, ApiKeyIn, ApiKeyOut, ApiKeyPage
from api.services import api_keys
from herald.tenants import ALL_SCOPES

router = APIRouter(prefix="/v1/api-keys", tags=["api keys"])


@router.get("")
async def list_keys(
    engine: EngineDep,
    tenant: AdminTenantDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> ApiKeyPage:
    """Prefix, kind, scopes, creation and last use of every key, newest first."""
    return await api_keys.list_keys(engine, tenant, limit=limit, cursor=cursor)


@router.post("", status_code=201)
async def create_key(
    engine: EngineDep, settings: SettingsDep, tenant: AdminTenantDep, body: ApiKeyIn | None = None
) -> ApiKeyCreated:
    """A new key (``{"kind": "test"}`` for a test key, ``"scopes"`` for fewer than all
    four); ``key`` is shown only here. 409 past ``HERALD_MAX_API_KEYS`` live keys."""
    body = body or ApiKeyIn()
    scopes = frozenset(body.scopes) if body.scopes else ALL_SCOPES
    return await api_keys.create_key(
        engine, tenant, body.kind, scopes, max_live_keys=settings.max_api_keys
    )


@router.delete("/{key_id}")
async def revoke_key(
    key_id: uuid.UUID, engine: EngineDep, keys: ApiKeysDep, tenant: AdminTenantDep
) -> ApiKeyOut:
    """Revoke a key: every request with it is refused from now on (``401``)."""
    return await api_keys.revoke_key(engine, keys, tenant, key_id)
