"""The worker's choice of providers per tenant, on real PostgreSQL and SMTP sinks: a
tenant with an integration sends through it, one without through the environment's
chain; breakers are per integration; a change reaches sends within the cache time; and a
send costs at most one indexed query (none while no tenant has an integration of the
channel)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import event, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.providers.failover import channel_providers
from activities.providers.integrations import IntegrationProvider, TenantChains
from devtools.sinks import Sinks
from herald.contracts import Channel, RenderedMessage, SendRequest
from herald.db import Notification, Tenant, make_engine
from herald.ports import free_port
from herald.settings import Settings
from tests.api.in_process import (
    api_key_for,
    in_process_client,
    in_process_settings,
    migrated_database,
)
from tests.harness import new_run_id

CACHE_SECONDS = 0.5


@pytest.fixture(scope="module")
def env_sink() -> Iterator[Sinks]:
    running = Sinks(smtp_port=free_port(), http_port=free_port()).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def own_sink() -> Iterator[Sinks]:
    running = Sinks(smtp_port=free_port(), http_port=free_port()).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def database(env_sink: Sinks) -> Iterator[Settings]:
    settings = in_process_settings(
        webhooks_allow_private=True,
        integrations_cache_seconds=CACHE_SECONDS,
        smtp_port=env_sink.smtp_port,
        breaker_failure_threshold=2,
    )
    with migrated_database(settings) as migrated:
        yield migrated


@pytest.fixture(scope="module")
async def engine(database: Settings) -> AsyncIterator[AsyncEngine]:
    made = make_engine(database, pool_size=2)
    yield made
    await made.dispose()


async def _tenant(database: Settings, engine: AsyncEngine) -> tuple[str, uuid.UUID]:
    name = f"chains-{new_run_id()}"
    key = await api_key_for(database, name)
    async with engine.connect() as conn:
        tenant_id = await conn.scalar(select(Tenant.id).where(Tenant.name == name))
    assert tenant_id is not None
    return key, tenant_id


async def _request(engine: AsyncEngine, tenant_id: uuid.UUID, **fields: Any) -> SendRequest:
    now = datetime.now(UTC)
    notification_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            insert(Notification).values(
                id=notification_id,
                tenant_id=tenant_id,
                channel="email",
                user_id="ada",
                template="t",
                status="queued",
                created_at=now,
                updated_at=now,
            )
        )
    return SendRequest(
        notification_id=notification_id,
        channel=Channel.email,
        address=fields.pop("address", "ada@example.org"),
        message=RenderedMessage(template_version=1, locale="en", subject="Hi", body="<p>hi</p>"),
        **fields,
    )


def _count_statements(engine: AsyncEngine) -> list[str]:
    seen: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", note)
    return seen


async def test_each_tenant_sends_through_its_own_integrations(
    database: Settings, engine: AsyncEngine, env_sink: Sinks, own_sink: Sinks
) -> None:
    key_a, tenant_a = await _tenant(database, engine)
    _, tenant_b = await _tenant(database, engine)
    async with httpx.AsyncClient() as http:
        default = channel_providers(Channel.email, database, http)
        tenants = TenantChains(Channel.email, default, engine, database, http)
        push = TenantChains(
            Channel.push, channel_providers(Channel.push, database, http), engine, database, http
        )
        # No integration anywhere yet: the environment's chain, and no query at all.
        seen = _count_statements(engine)
        request_b = await _request(engine, tenant_b, address="bea@example.org")
        seen.clear()
        assert await tenants.chain_for(request_b) is default
        assert len(seen) == 1  # the (empty) integrations of the channel, then cached
        assert await tenants.chain_for(request_b) is default
        assert len(seen) == 1

        async with in_process_client(database, key_a) as api:
            made = await api.post(
                "/v1/integrations",
                json={
                    "channel": "email",
                    "provider": "smtp",
                    "name": "a-relay",
                    "config": {
                        "host": "127.0.0.1",
                        "port": own_sink.smtp_port,
                        "from": "A <a@example.org>",
                    },
                },
            )
            assert made.status_code == 201, made.text
            second = await api.post(
                "/v1/integrations",
                json={
                    "channel": "email",
                    "provider": "smtp",
                    "name": "a-backup",
                    "config": {"host": "127.0.0.1", "port": env_sink.smtp_port},
                },
            )
            integration = made.json()["id"]
            await asyncio.sleep(CACHE_SECONDS + 0.1)

            request_a = await _request(engine, tenant_a)
            chain = await tenants.chain_for(request_a)
            assert [route.provider.name for route in chain.routes] == ["a-relay", "a-backup"]
            breakers = {route.breaker for route in chain.routes}
            assert len(breakers) == 2  # one per integration, though both are "smtp"
            delivery = await chain.deliver_via(request_a)
            assert delivery.provider == "a-relay"
            (received,) = own_sink.state.received("email")
            assert received.to == "ada@example.org"
            assert env_sink.state.received("email") == []
            assert await tenants.chain_for(request_b) is default

            # The hot path: one indexed query per send at most (the notification's
            # tenant), plus one refresh per cache period.
            requests = [await _request(engine, tenant_a) for _ in range(200)]
            seen.clear()
            started = time.perf_counter()
            for request in requests:
                assert await tenants.chain_for(request) is chain
            elapsed = time.perf_counter() - started
            refreshes = 1 + int(elapsed / CACHE_SECONDS)
            assert len(seen) <= len(requests) + refreshes, len(seen)
            assert all("notifications" in s or "integrations" in s for s in seen)
            print(
                f"chain_for: {elapsed / len(requests) * 1000:.2f} ms per send, {len(seen)} queries"
            )
            # A channel no tenant has integrations for costs no query per send.
            seen.clear()
            push_request = request_a.model_copy(update={"channel": Channel.push})
            for _ in range(20):
                await push.chain_for(push_request)
            assert len(seen) <= 1
            # Test-mode sends never look.
            seen.clear()
            await tenants.chain_for(request_a.model_copy(update={"test": True}))
            assert seen == []

            # Disabled: within the cache time, A's sends go through its backup only; the
            # breaker of the backup is the same one (kept by integration id).
            backup_breaker = chain.routes[1].breaker
            changed = await api.patch(f"/v1/integrations/{integration}", json={"enabled": False})
            assert changed.status_code == 200
            await asyncio.sleep(CACHE_SECONDS + 0.1)
            after = await tenants.chain_for(request_a)
            assert [route.provider.name for route in after.routes] == ["a-backup"]
            assert after.routes[0].breaker is backup_breaker
            # Removed altogether: the environment's chain again.
            assert (await api.delete(f"/v1/integrations/{second.json()['id']}")).status_code == 204
            await asyncio.sleep(CACHE_SECONDS + 0.1)
            assert await tenants.chain_for(request_a) is default
        await tenants.close()
        await default.close()


async def test_an_integrations_failures_are_noted_for_the_console(
    database: Settings, engine: AsyncEngine
) -> None:
    key, tenant = await _tenant(database, engine)
    async with in_process_client(database, key) as api:
        made = await api.post(
            "/v1/integrations",
            json={
                "channel": "email",
                "provider": "smtp",
                "config": {"host": "127.0.0.1", "port": free_port()},
            },
        )
        integration = made.json()["id"]
        async with httpx.AsyncClient() as http:
            default = channel_providers(Channel.email, database, http)
            tenants = TenantChains(Channel.email, default, engine, database, http)
            chain = await tenants.chain_for(await _request(engine, tenant))
            assert isinstance(chain.routes[0].provider, IntegrationProvider)
            with pytest.raises(Exception, match="Connect"):
                await chain.deliver_via(await _request(engine, tenant))
            await tenants.close()
        shown = (await api.get(f"/v1/integrations/{integration}")).json()
        assert "Connect" in shown["last_error"] and shown["last_error_at"]
