"""``/v1/api-keys``: the tenant's keys; a new one is shown once, a revoked one is refused
at once."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from api.admin_schemas import ApiKeyCreated, ApiKeyIn, ApiKeyOut, ApiKeyPage
from api.deps import ApiKeysDep, EngineDep, TenantDep
from api.services import api_keys

router = APIRouter(prefix="/v1/api-keys", tags=["api keys"])


@router.get("")
async def list_keys(
    engine: EngineDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> ApiKeyPage:
    """Prefix, kind, creation and last use of every key, newest first."""
    return await api_keys.list_keys(engine, tenant, limit=limit, cursor=cursor)


@router.post("", status_code=201)
async def create_key(
    engine: EngineDep, tenant: TenantDep, body: ApiKeyIn | None = None
) -> ApiKeyCreated:
    """A new key (``{"kind": "test"}`` for a test key); ``key`` is shown only here."""
    return await api_keys.create_key(engine, tenant, (body or ApiKeyIn()).kind)


@router.delete("/{key_id}")
async def revoke_key(
    key_id: uuid.UUID, engine: EngineDep, keys: ApiKeysDep, tenant: TenantDep
) -> ApiKeyOut:
    """Revoke a key: every request with it is refused from now on (``401``)."""
    return await api_keys.revoke_key(engine, keys, tenant, key_id)
