"""Which providers a send goes through: its tenant's integrations, or the deployment's.

A tenant with enabled integrations of the channel sends through them in priority order,
as a ``ProviderChain`` with one circuit breaker per integration (kept by integration id,
so two SendGrid accounts fail over independently, and a breaker survives a refresh). A
tenant with none uses the channel's chain from the environment.

The worker keeps the channel's enabled integrations for ``HERALD_INTEGRATIONS_CACHE_SECONDS``
(one query each time they go stale); a send then costs at most one primary-key lookup
(its notification's tenant), and none while no tenant has an integration of the channel.
Credentials are decrypted here, in the worker, from the row: they never travel in a
``SendRequest`` or anywhere else in Temporal.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from cachetools import TTLCache
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.providers import registry
from activities.providers.base import Provider, ProviderError
from activities.providers.failover import ProviderChain, Route
from activities.providers.sendrate import SendRate
from herald.breaker import CircuitBreaker
from herald.contracts import Channel, SendRequest
from herald.db import Integration, Notification, single_statements
from herald.gcra import Gcra
from herald.secretbox import SecretBox, SecretsError
from herald.settings import Settings

log = logging.getLogger(__name__)

# A failure record must never hold up a send.
_RECORD_TIMEOUT = 2.0
_MAX_ERROR = 500


@dataclass(frozen=True)
class _Row:
    id: uuid.UUID
    tenant_id: uuid.UUID
    provider: str
    name: str
    priority: int
    rate_per_second: float | None
    config_ciphertext: bytes
    key_id: str
    updated_at: datetime


async def record_error(engine: AsyncEngine, integration_id: uuid.UUID, error: str) -> None:
    """Note an integration's latest failure (the console shows it), best effort."""
    try:
        async with engine.begin() as conn:
            await asyncio.wait_for(
                conn.execute(
                    update(Integration)
                    .where(Integration.id == integration_id)
                    .values(last_error=error[:_MAX_ERROR], last_error_at=datetime.now(UTC))
                ),
                _RECORD_TIMEOUT,
            )
    except Exception:
        log.warning("could not record an integration's failure", exc_info=True)


class IntegrationProvider(Provider):
    """One integration's provider: takes its turn of the integration's rate and notes the
    provider's failures on the integration."""

    def __init__(
        self,
        inner: Provider,
        integration_id: uuid.UUID,
        engine: AsyncEngine | None,
        rate: SendRate | None,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.integration_id = integration_id
        self._engine = engine
        self._rate = rate

    async def deliver(self, request: SendRequest) -> str:
        """Deliver through the integration's provider."""
        if self._rate is not None:
            await self._rate.take()
        try:
            return await self.inner.deliver(request)
        except ProviderError as err:
            if err.provider_fault:
                await self._note(str(err))
            raise
        except (TimeoutError, OSError) as err:
            await self._note(f"{type(err).__name__}: {err}")
            raise

    async def _note(self, error: str) -> None:
        if self._engine is not None:
            await record_error(self._engine, self.integration_id, error)

    def serves(self, request: SendRequest) -> bool:
        """As the provider says (a chat provider sends to its own service only)."""
        return self.inner.serves(request)

    async def check(self) -> tuple[bool, str]:
        """The provider's own check."""
        return await self.inner.check()

    async def close(self) -> None:
        """Close the provider."""
        await self.inner.close()


class TenantChains:
    """The chain each send of one channel goes through."""

    def __init__(
        self,
        channel: Channel,
        default: ProviderChain,
        engine: AsyncEngine,
        settings: Settings,
        http: httpx.AsyncClient,
    ) -> None:
        self.channel = channel
        self.default = default
        self._engine = engine
        self._settings = settings
        self._http = http
        self._box = SecretBox.from_settings(settings)
        self._rows: TTLCache[str, dict[uuid.UUID, list[_Row]]] = TTLCache(
            maxsize=1, ttl=settings.integrations_cache_seconds
        )
        self._refresh = asyncio.Lock()
        self._chains: dict[uuid.UUID, tuple[tuple[Any, ...], ProviderChain]] = {}
        self._providers: dict[tuple[uuid.UUID, datetime], IntegrationProvider] = {}
        self._breakers: dict[uuid.UUID, CircuitBreaker] = {}
        self._gcra: Gcra | None = None

    async def chain_for(self, request: SendRequest) -> ProviderChain:
        """The tenant's integrations of the channel, or the deployment's providers."""
        if request.test:  # answered by the test-mode provider whatever the chain
            return self.default
        try:
            rows = await self._integrations()
            if not rows:
                return self.default
            tenant_id = request.tenant_id or await self._tenant_of(request.notification_id)
        except (SQLAlchemyError, OSError) as err:
            # Not knowing whose credentials to use, send with none: Temporal retries.
            raise ProviderError(
                f"could not read the tenant's integrations: {type(err).__name__}",
                permanent=False,
                provider_fault=False,
            ) from err
        mine = rows.get(tenant_id) if tenant_id is not None else None
        if not mine:
            return self.default
        return self._chain(tenant_id, mine)  # type: ignore[arg-type]

    async def _integrations(self) -> dict[uuid.UUID, list[_Row]]:
        rows = self._rows.get("rows")
        if rows is not None:
            return rows
        async with self._refresh:
            rows = self._rows.get("rows")
            if rows is None:
                rows = await self._load()
                self._rows["rows"] = rows
        return rows

    async def _load(self) -> dict[uuid.UUID, list[_Row]]:
        columns = [getattr(Integration, name) for name in _Row.__dataclass_fields__]
        async with self._engine.connect() as conn:
            result = await conn.execute(
                select(*columns)
                .where(Integration.channel == self.channel.value, Integration.enabled)
                .order_by(Integration.tenant_id, Integration.priority, Integration.created_at)
            )
            found: dict[uuid.UUID, list[_Row]] = {}
            for row in result:
                found.setdefault(row.tenant_id, []).append(_Row(**row._asdict()))
        live = {(row.id, row.updated_at) for rows in found.values() for row in rows}
        for key in [key for key in self._providers if key not in live]:
            await self._providers.pop(key).close()
        return found

    async def _tenant_of(self, notification_id: uuid.UUID) -> uuid.UUID | None:
        async with single_statements(self._engine) as conn:
            tenant_id: uuid.UUID | None = await conn.scalar(
                select(Notification.tenant_id).where(Notification.id == notification_id)
            )
        return tenant_id

    def _chain(self, tenant_id: uuid.UUID, rows: list[_Row]) -> ProviderChain:
        signature = tuple((row.id, row.updated_at) for row in rows)
        cached = self._chains.get(tenant_id)
        if cached is not None and cached[0] == signature:
            return cached[1]
        routes = []
        for row in rows:
            provider = self._provider(row)
            if provider is not None:
                routes.append(Route(provider=provider, breaker=self._breaker(row)))
        if routes and self.channel is Channel.chat:
            # Teams and Discord need no integration (the address is the webhook): a tenant
            # with only Slack still reaches its users' webhooks.
            routes += [r for r in self.default.routes if r.provider.name in ("teams", "discord")]
        chain = ProviderChain(routes) if routes else self.default
        self._chains[tenant_id] = (signature, chain)
        return chain

    def _provider(self, row: _Row) -> IntegrationProvider | None:
        key = (row.id, row.updated_at)
        made = self._providers.get(key)
        if made is not None:
            return made
        try:
            config = self._box.open(row.tenant_id, row.id, row.key_id, row.config_ciphertext)
            inner = registry.build(
                self.channel, row.provider, config, self._settings, self._http, row.name
            )
        except (SecretsError, KeyError, ValueError) as err:
            # Never the config itself in the log: only what is wrong with it.
            log.error(
                "integration skipped: %s",
                type(err).__name__ if not isinstance(err, SecretsError) else err,
                extra={"integration": str(row.id), "provider": row.provider},
            )
            return None
        rate = None
        if row.rate_per_second:
            if self._gcra is None:
                self._gcra = Gcra(self._settings.redis_url)
            key_name = f"herald:sendrate:{self._settings.task_queue_prefix}:integration:{row.id}"
            rate = SendRate(self._gcra, key_name, row.rate_per_second)
        made = self._providers[key] = IntegrationProvider(inner, row.id, self._engine, rate)
        return made

    def _breaker(self, row: _Row) -> CircuitBreaker:
        breaker = self._breakers.get(row.id)
        if breaker is None:
            s = self._settings
            breaker = self._breakers[row.id] = CircuitBreaker(
                f"{row.provider}:{row.id}",
                failure_threshold=s.breaker_failure_threshold,
                reset_seconds=s.breaker_reset_seconds,
                probe_wait_seconds=min(s.provider_timeout_seconds, 5.0),
            )
        return breaker

    async def close(self) -> None:
        """Close every integration's provider (the default chain is its owner's)."""
        while self._providers:
            await self._providers.popitem()[1].close()
        if self._gcra is not None:
            await self._gcra.close()
