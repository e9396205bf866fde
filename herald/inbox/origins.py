"""The browser origins each tenant lets call its users' inbox (CORS), as set by
``herald tenant origins NAME https://app.example.com``."""

from __future__ import annotations

import time
import uuid
from urllib.parse import urlsplit

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


class InvalidOrigin(ValueError):
    """Not an origin a browser sends (``scheme://host[:port]``, http or https)."""


def normalize_origin(value: str) -> str:
    """``value`` as browsers send it in ``Origin``: lower-case, no path, no default port."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError as err:
        raise InvalidOrigin(f"not an origin: {value!r}") from err
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username
        or "\x00" in value
    ):
        raise InvalidOrigin(f"not an origin (scheme://host[:port]): {value!r}")
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


_TENANT = text("SELECT id FROM tenants WHERE name = :name")
_CLEAR = text("DELETE FROM tenant_inbox_origins WHERE tenant = :tenant")
_ADD = text(
    "INSERT INTO tenant_inbox_origins (tenant, origin) VALUES (:tenant, :origin)"
    " ON CONFLICT DO NOTHING"
)
_OF_TENANT = text("SELECT origin FROM tenant_inbox_origins WHERE tenant = :tenant ORDER BY origin")
_ALL = text("SELECT tenant, origin FROM tenant_inbox_origins")


async def set_origins(engine: AsyncEngine, name: str, origins: list[str]) -> list[str] | None:
    """Replace the tenant's allowed origins (already normalized); None if no such tenant."""
    async with engine.begin() as conn:
        tenant = (await conn.execute(_TENANT, {"name": name})).scalar()
        if tenant is None:
            return None
        await conn.execute(_CLEAR, {"tenant": tenant})
        for origin in origins:
            await conn.execute(_ADD, {"tenant": tenant, "origin": origin})
        return list((await conn.execute(_OF_TENANT, {"tenant": tenant})).scalars())


async def origins_of(engine: AsyncEngine, name: str) -> list[str] | None:
    """The tenant's allowed origins; None if no such tenant."""
    async with engine.connect() as conn:
        tenant = (await conn.execute(_TENANT, {"name": name})).scalar()
        if tenant is None:
            return None
        return list((await conn.execute(_OF_TENANT, {"tenant": tenant})).scalars())


class OriginCache:
    """Every tenant's allowed origins, re-read at most every ``ttl_seconds``."""

    def __init__(self, engine: AsyncEngine, ttl_seconds: float = 5.0) -> None:
        self._engine = engine
        self._ttl = ttl_seconds
        self._loaded_at = float("-inf")
        self._by_tenant: dict[uuid.UUID, frozenset[str]] = {}
        self._any: frozenset[str] = frozenset()

    async def _fresh(self) -> None:
        if time.monotonic() - self._loaded_at < self._ttl:
            return
        async with self._engine.connect() as conn:
            rows = (await conn.execute(_ALL)).all()
        by_tenant: dict[uuid.UUID, set[str]] = {}
        for row in rows:
            by_tenant.setdefault(row.tenant, set()).add(row.origin)
        self._by_tenant = {tenant: frozenset(found) for tenant, found in by_tenant.items()}
        self._any = frozenset(row.origin for row in rows)
        self._loaded_at = time.monotonic()

    async def allowed(self, origin: str, tenant: uuid.UUID | None) -> bool:
        """Whether ``tenant`` allows ``origin`` (None: whether any tenant does, for a
        preflight, which carries no token)."""
        await self._fresh()
        if tenant is None:
            return origin in self._any
        return origin in self._by_tenant.get(tenant, frozenset())
