"""Tenants and API keys: keys are created by an operator, stored as SHA-256, and resolved
per request through a short cache."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cachetools import TTLCache
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from herald.db import ApiKey, Tenant

# API keys whose answers the cache holds at once (per API process).
API_KEY_CACHE_SIZE: Final = 10_000


@dataclass(frozen=True)
class TenantContext:
    """The tenant an authenticated request acts for."""

    id: uuid.UUID
    name: str
    # Requests per minute per API key; None means the deployment's default.
    rate_limit_per_minute: int | None = None


def hash_key(key: str) -> str:
    """How a key is stored: never the key itself."""
    return hashlib.sha256(key.encode()).hexdigest()


async def ensure_tenant(engine: AsyncEngine, name: str) -> TenantContext:
    """The tenant called ``name``, created if it does not exist yet."""
    async with engine.begin() as conn:
        await conn.execute(
            insert(Tenant).values(id=uuid.uuid4(), name=name).on_conflict_do_nothing()
        )
        tenant_id = (await conn.execute(select(Tenant.id).where(Tenant.name == name))).scalar_one()
    return TenantContext(tenant_id, name)


async def create_api_key(engine: AsyncEngine, tenant_name: str) -> str:
    """A new key for the tenant (created if needed); the only time the key is visible."""
    tenant = await ensure_tenant(engine, tenant_name)
    key = f"hk_{secrets.token_urlsafe(32)}"
    async with engine.begin() as conn:
        await conn.execute(
            insert(ApiKey).values(
                id=uuid.uuid4(), tenant_id=tenant.id, key_hash=hash_key(key), prefix=key[:10]
            )
        )
    return key


class ApiKeyCache:
    """Resolves keys to tenants, remembering answers briefly so auth is not a query per call.

    Unknown keys are remembered too, so a flood of bad keys is not a query each; the
    least recently used answers make room once ``API_KEY_CACHE_SIZE`` are held.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        ttl_seconds: float,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._known: TTLCache[str, TenantContext | None] = TTLCache(
            maxsize=API_KEY_CACHE_SIZE, ttl=ttl_seconds, timer=timer
        )

    async def tenant_for(self, key: str) -> TenantContext | None:
        """The key's tenant, or None for an unknown or revoked key."""
        digest = hash_key(key)
        try:
            return self._known[digest]
        except KeyError:
            pass  # never asked, or the answer expired
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(Tenant.id, Tenant.name, Tenant.rate_limit_per_minute)
                    .join(ApiKey, ApiKey.tenant_id == Tenant.id)
                    .where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
                )
            ).first()
        tenant = TenantContext(row.id, row.name, row.rate_limit_per_minute) if row else None
        self._known[digest] = tenant
        return tenant


async def set_rate_limit(engine: AsyncEngine, name: str, per_minute: int | None) -> bool:
    """Give the tenant its own per-key rate limit (None: the default); False if unknown."""
    async with engine.begin() as conn:
        updated = await conn.execute(
            update(Tenant).where(Tenant.name == name).values(rate_limit_per_minute=per_minute)
        )
    return bool(updated.rowcount)


async def tenant_by_name(engine: AsyncEngine, name: str) -> TenantContext | None:
    """The tenant called ``name``, if any (the bridge names tenants this way)."""
    async with engine.connect() as conn:
        row = (await conn.execute(select(Tenant.id).where(Tenant.name == name))).first()
    return TenantContext(row.id, name) if row else None
