"""The per-process caches in front of PostgreSQL: API keys expire after their time to live,
and both caches, when full, forget the least recently used entry rather than everything.

They run on a real PostgreSQL database of their own (no Temporal needed) and count the
statements each call sends to it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from cachetools import LRUCache
from sqlalchemy import event, update
from sqlalchemy.ext.asyncio import AsyncEngine

from herald import submission, tenants
from herald.contracts import NotificationRequest
from herald.db import ApiKey, Template, make_engine
from herald.migrate import drop_database, ensure_database, upgrade
from herald.settings import Settings
from herald.tenants import ApiKeyCache, create_api_key, ensure_tenant, hash_key
from tests.harness import new_run_id


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    """A migrated database for this module alone."""
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/herald_test_caches_{new_run_id()}"
    asyncio.run(ensure_database(url))
    upgrade(url)
    yield url
    asyncio.run(drop_database(url))


class Queries:
    """Counts the statements an engine sends to PostgreSQL."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.count = 0
        event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, *_: Any) -> None:
        self.count += 1

    def since(self, before: int) -> int:
        """Statements sent since the count was ``before``."""
        return self.count - before


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on this module's database."""
    made = make_engine(Settings(database_url=database_url), pool_size=1)
    yield made
    await made.dispose()


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_revoked_key_works_until_its_cached_answer_expires(engine: AsyncEngine) -> None:
    name = f"caches-{new_run_id()}"
    key = await create_api_key(engine, name)
    clock = FakeClock()
    cache = ApiKeyCache(engine, ttl_seconds=30, timer=clock)
    tenant = await cache.tenant_for(key)
    assert tenant is not None and tenant.name == name

    async with engine.begin() as conn:
        revoke = update(ApiKey).where(ApiKey.key_hash == hash_key(key))
        await conn.execute(revoke.values(revoked_at=datetime.now(UTC)))
    clock.now += 29.9
    assert await cache.tenant_for(key) == tenant  # still the remembered answer

    clock.now += 0.1
    assert await cache.tenant_for(key) is None  # expired: PostgreSQL says revoked


async def test_an_unknown_key_is_remembered_as_unknown(engine: AsyncEngine) -> None:
    queries = Queries(engine)
    cache = ApiKeyCache(engine, ttl_seconds=30, timer=FakeClock())
    assert await cache.tenant_for("hk_nobody") is None
    before = queries.count
    assert await cache.tenant_for("hk_nobody") is None
    assert queries.since(before) == 0


async def test_a_full_key_cache_keeps_the_keys_in_use(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tenants, "API_KEY_CACHE_SIZE", 3)
    key = await create_api_key(engine, f"caches-{new_run_id()}")
    queries = Queries(engine)
    cache = ApiKeyCache(engine, ttl_seconds=30, timer=FakeClock())
    await cache.tenant_for(key)
    for stranger in range(10):
        await cache.tenant_for(f"hk_unknown_{stranger}")
        await cache.tenant_for(key)  # the busy key, used between every other request

    before = queries.count
    assert await cache.tenant_for(key) is not None
    assert queries.since(before) == 0
    before = queries.count
    await cache.tenant_for("hk_unknown_0")  # long since pushed out by the others
    assert queries.since(before) == 1


async def test_known_templates_forget_the_least_recently_used_when_full(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(submission, "_known_templates", LRUCache(maxsize=2))
    tenant = await ensure_tenant(engine, f"caches-{new_run_id()}")
    async with engine.begin() as conn:
        for key in ("welcome", "reset", "receipt"):
            await conn.execute(
                Template.__table__.insert().values(
                    tenant_id=tenant.id, key=key, channel="email", locale="en", version=1, body="hi"
                )
            )
    queries = Queries(engine)

    async def lookups(template: str) -> int:
        """Statements one check of the template sends (0: it was remembered)."""
        before = queries.count
        request = NotificationRequest(channel="email", user_id="ada", template=template)
        assert await submission.missing_templates(engine, tenant.id, request) == []
        return queries.since(before)

    assert await lookups("welcome") == 1
    assert await lookups("reset") == 1
    assert await lookups("welcome") == 0  # remembered, and now the most recently used
    assert await lookups("receipt") == 1  # full: "reset" makes room
    assert await lookups("welcome") == 0
    assert await lookups("reset") == 1


async def test_a_template_without_a_version_is_not_remembered(engine: AsyncEngine) -> None:
    tenant = await ensure_tenant(engine, f"caches-{new_run_id()}")
    queries = Queries(engine)
    request = NotificationRequest(channel="sms", user_id="ada", template=f"t-{uuid.uuid4()}")
    for _ in range(2):
        before = queries.count
        assert await submission.missing_templates(engine, tenant.id, request) == [request.channel]
        assert queries.since(before) == 1
