"""The real FastAPI app served inside the test process (httpx ``ASGITransport``): the same
routes, middleware and error handlers as ``herald api``, without a server process, for
fast checks of validation, error shapes and middleware.

PostgreSQL is real where a route needs it; the Temporal client connects lazily and is
never reached by the routes these tests call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import httpx

from api.main import create_app
from herald.db import make_engine
from herald.migrate import drop_database, ensure_database, upgrade
from herald.ports import free_port
from herald.settings import Settings
from herald.tenants import create_api_key
from tests.harness import new_run_id


def in_process_settings(**overrides: object) -> Settings:
    """Settings for an in-process app: a database of its own, no Temporal server."""
    values: dict[str, object] = {
        "database_url": f"postgresql+asyncpg://postgres@127.0.0.1:5432/herald_test_{new_run_id()}",
        # Nothing listens here: a route that reached Temporal would fail, not hang.
        "temporal_address": f"127.0.0.1:{free_port()}",
        "api_key_cache_seconds": 1.0,
        **overrides,
    }
    return Settings.model_validate(values)


@contextmanager
def migrated_database(settings: Settings) -> Iterator[Settings]:
    """Create and migrate the settings' database for the duration (run outside a loop)."""
    asyncio.run(ensure_database(settings.database_url))
    try:
        upgrade(settings.database_url)
        yield settings
    finally:
        asyncio.run(drop_database(settings.database_url))


async def api_key_for(settings: Settings, tenant: str) -> str:
    """A new API key of ``tenant`` (created with the tenant if need be)."""
    engine = make_engine(settings, pool_size=1)
    try:
        return await create_api_key(engine, tenant)
    finally:
        await engine.dispose()


@asynccontextmanager
async def in_process_client(
    settings: Settings, api_key: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a fresh app whose lifespan runs around the block."""
    app = create_app(settings)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://herald.test", headers=headers
        ) as client:
            yield client
