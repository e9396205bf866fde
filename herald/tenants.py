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
from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from herald.db import API_KEY_SCOPES, ApiKey, Tenant, single_statements

# API keys whose answers the cache holds at once (per API process).
API_KEY_CACHE_SIZE: Final = 10_000
# Every scope: what a key has unless it was created with fewer.
ALL_SCOPES: Final = frozenset(API_KEY_SCOPES)


@dataclass(frozen=True)
class TenantContext:
    """The tenant an authenticated request acts for."""

    id: uuid.UUID
    name: str
    # The tenant's own requests per minute, across all its keys; None means the
    # deployment's default per API key.
    rate_limit_per_minute: int | None = None
    # The key the request came with: its id, whether it is a test key, and what it may do.
    key_id: uuid.UUID | None = None
    test: bool = False
    scopes: frozenset[str] = ALL_SCOPES


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


async def create_api_key(
    engine: AsyncEngine,
    tenant_name: str,
    *,
    test: bool = False,
    scopes: frozenset[str] = ALL_SCOPES,
) -> str:
    """A new key for the tenant (created if needed); the only time the key is visible.

    A ``test`` key's notifications go through the whole lifecycle but never reach a
    provider (``activities/providers/testmode.py``).
    """
    tenant = await ensure_tenant(engine, tenant_name)
    key, _ = await issue_api_key(engine, tenant.id, test=test, scopes=scopes)
    return key


class ApiKeyCache:
    """Resolves keys to tenants, remembering answers briefly so auth is not a query per call.

    Unknown keys are remembered too, so a flood of bad keys is not a query each; the
    least recently used answers make room once ``API_KEY_CACHE_SIZE`` are held. A revoked
    key is forgotten at once (``forget``, called by the revoking process and, through
    PostgreSQL's NOTIFY, by every other API process); the TTL bounds how long an answer
    can outlive a revocation that was not heard of.

    Resolving a key from PostgreSQL also notes its last use, at most once a minute.
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
        # Bumped by every ``forget``: an answer read before a revocation is not kept.
        self._generation = 0

    async def tenant_for(self, key: str) -> TenantContext | None:
        """The key's tenant, or None for an unknown or revoked key."""
        return await self.tenant_for_digest(hash_key(key))

    async def tenant_for_digest(self, digest: str) -> TenantContext | None:
        """``tenant_for`` by the key's stored hash (what a console session holds)."""
        try:
            return self._known[digest]
        except KeyError:
            pass  # never asked, or the answer expired
        generation = self._generation
        async with single_statements(self._engine) as conn:
            row = (await conn.execute(_RESOLVE_KEY, {"digest": digest})).first()
        tenant = (
            TenantContext(
                row.id,
                row.name,
                row.rate_limit_per_minute,
                key_id=row.key_id,
                test=row.test,
                scopes=frozenset(row.scopes),
            )
            if row
            else None
        )
        if generation == self._generation:
            self._known[digest] = tenant
        return tenant

    def forget(self, digest: str) -> None:
        """Drop what is remembered about a key (it was just revoked)."""
        self._generation += 1
        self._known.pop(digest, None)

    def forget_all(self) -> None:
        """Drop every remembered answer (revocations may have gone unheard)."""
        self._generation += 1
        self._known.clear()


# The key's tenant and kind; its last use is noted in the same statement, at most once a
# minute, so a busy key costs one write a minute per API process at most.
_RESOLVE_KEY = text(
    """
    WITH key AS (
        SELECT id, tenant_id, kind, scopes FROM api_keys
        WHERE key_hash = :digest AND revoked_at IS NULL
    ), touched AS (
        UPDATE api_keys SET last_used_at = now()
        WHERE id IN (SELECT id FROM key)
          AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
    )
    SELECT tenants.id, tenants.name, tenants.rate_limit_per_minute,
           key.id AS key_id, key.kind = 'test' AS test, key.scopes
    FROM key JOIN tenants ON tenants.id = key.tenant_id
    """
)


async def set_rate_limit(engine: AsyncEngine, name: str, per_minute: int | None) -> bool:
    """Give the tenant its own rate limit, shared by all its keys (None: the default per
    key); False if unknown."""
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


# Where a revocation is announced to every API process (payload: the key's hash).
REVOCATION_CHANNEL: Final = "herald_api_key_revoked"


async def issue_api_key(
    engine: AsyncEngine,
    tenant_id: uuid.UUID,
    *,
    test: bool = False,
    scopes: frozenset[str] = ALL_SCOPES,
) -> tuple[str, uuid.UUID]:
    """A new key of an existing tenant and its id; the only time the key is visible."""
    async with engine.begin() as conn:
        return await insert_api_key(conn, tenant_id, test=test, scopes=scopes)


async def insert_api_key(
    conn: AsyncConnection,
    tenant_id: uuid.UUID,
    *,
    test: bool = False,
    scopes: frozenset[str] = ALL_SCOPES,
) -> tuple[str, uuid.UUID]:
    """``issue_api_key`` inside the caller's transaction (which may check a cap first)."""
    unknown = scopes - ALL_SCOPES
    if unknown or not scopes:
        raise ValueError(f"scopes must be some of {', '.join(API_KEY_SCOPES)}: {sorted(unknown)}")
    key = f"hk_{'test_' if test else ''}{secrets.token_urlsafe(32)}"
    key_id = uuid.uuid4()
    await conn.execute(
        insert(ApiKey).values(
            id=key_id,
            tenant_id=tenant_id,
            key_hash=hash_key(key),
            prefix=key[:15] if test else key[:10],
            kind="test" if test else "live",
            # In the documented order, so listings read alike.
            scopes=[scope for scope in API_KEY_SCOPES if scope in scopes],
        )
    )
    return key, key_id
