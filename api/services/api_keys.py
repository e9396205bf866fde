"""A tenant's API keys: list, create (the key shown once), revoke (at once, everywhere).

A test key may manage test keys only: it is the kind handed to whoever tries an
integration, and must not mint or revoke the keys that send for real. A tenant has at
most ``HERALD_MAX_API_KEYS`` live keys that are not revoked.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import RowMapping, func, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncEngine

from api.errors import ApiError, not_found
from api.pagination import NEWEST_FIRST, decode_cursor, encode_cursor
from api.schemas.api_keys import ApiKeyCreated, ApiKeyOut, ApiKeyPage
from api.services.caps import within_cap
from herald.db import ApiKey
from herald.tenants import (
    ALL_SCOPES,
    REVOCATION_CHANNEL,
    ApiKeyCache,
    TenantContext,
    insert_api_key,
)

_LISTED = (
    ApiKey.id,
    ApiKey.prefix,
    ApiKey.kind,
    ApiKey.scopes,
    ApiKey.created_at,
    ApiKey.last_used_at,
    ApiKey.revoked_at,
)


def _out(row: RowMapping) -> ApiKeyOut:
    return ApiKeyOut.model_validate(dict(row))


def _may_manage(tenant: TenantContext, kind: str) -> None:
    if tenant.test and kind != "test":
        raise ApiError(403, "a test key can create and revoke test keys only")


def _position(cursor: str) -> tuple[datetime, uuid.UUID]:
    created_at, key_id = decode_cursor(cursor, *NEWEST_FIRST)
    return created_at, key_id


async def list_keys(
    engine: AsyncEngine, tenant: TenantContext, *, limit: int, cursor: str | None
) -> ApiKeyPage:
    """The tenant's keys, revoked ones included, newest first."""
    query = select(*_LISTED).where(ApiKey.tenant_id == tenant.id)
    if cursor is not None:
        created_at, key_id = _position(cursor)
        query = query.where(tuple_(ApiKey.created_at, ApiKey.id) < tuple_(created_at, key_id))
    query = query.order_by(ApiKey.created_at.desc(), ApiKey.id.desc()).limit(limit + 1)
    async with engine.connect() as conn:
        rows = [_out(row) for row in (await conn.execute(query)).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more else None
    return ApiKeyPage(
        items=rows,
        next_cursor=encode_cursor(last.created_at.isoformat(), last.id) if last else None,
    )


async def create_key(
    engine: AsyncEngine,
    tenant: TenantContext,
    kind: str,
    scopes: frozenset[str] = ALL_SCOPES,
    *,
    max_live_keys: int,
) -> ApiKeyCreated:
    """A new key of the tenant with ``scopes``; the answer is the only place the key ever
    appears. 409 once the tenant has ``max_live_keys`` live keys."""
    _may_manage(tenant, kind)
    async with engine.begin() as conn:
        if kind == "live":
            await within_cap(
                conn,
                tenant.id,
                select(ApiKey.id).where(
                    ApiKey.tenant_id == tenant.id,
                    ApiKey.kind == "live",
                    ApiKey.revoked_at.is_(None),
                ),
                cap=max_live_keys,
                what="live API keys",
                setting="HERALD_MAX_API_KEYS",
            )
        key, key_id = await insert_api_key(conn, tenant.id, test=kind == "test", scopes=scopes)
        row = (await conn.execute(select(*_LISTED).where(ApiKey.id == key_id))).mappings().one()
    return ApiKeyCreated(**_out(row).model_dump(), key=key)


async def revoke_key(
    engine: AsyncEngine, keys: ApiKeyCache, tenant: TenantContext, key_id: uuid.UUID
) -> ApiKeyOut:
    """Revoke a key of the tenant: refused by every API process from now on.

    The revocation and its announcement commit together (PostgreSQL delivers a NOTIFY
    on commit), so every API process forgets the key as soon as it is revoked; this
    process forgets it before answering.
    """
    async with engine.begin() as conn:
        current = (
            await conn.execute(
                select(ApiKey.kind, ApiKey.key_hash).where(
                    ApiKey.id == key_id, ApiKey.tenant_id == tenant.id
                )
            )
        ).first()
        if current is None:
            raise not_found(f"API key {key_id}")
        _may_manage(tenant, current.kind)
        row = (
            (
                await conn.execute(
                    update(ApiKey)
                    .where(ApiKey.id == key_id)
                    .values(revoked_at=func.coalesce(ApiKey.revoked_at, func.now()))
                    .returning(*_LISTED)
                )
            )
            .mappings()
            .one()
        )
        await conn.execute(
            text("SELECT pg_notify(:channel, :digest)"),
            {"channel": REVOCATION_CHANNEL, "digest": current.key_hash},
        )
    keys.forget(current.key_hash)
    return _out(row)
