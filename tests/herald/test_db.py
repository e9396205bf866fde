"""The connection pool on a real PostgreSQL: idle connections that died are replaced."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from herald.db import make_engine
from herald.settings import Settings

_PID = text("SELECT pg_backend_pid()")


async def _backend(engine: AsyncEngine) -> int:
    """The server process behind the connection the pool hands out."""
    async with engine.connect() as conn:
        return int((await conn.execute(_PID)).scalar_one())


async def test_an_idle_connection_killed_by_the_server_is_replaced_before_use(
    settings: Settings,
) -> None:
    """What a PostgreSQL restart does to a pool: the next request still succeeds."""
    engine = make_engine(settings, pool_size=1)
    admin = make_engine(settings, pool_size=1, pre_ping=False)
    try:
        first = await _backend(engine)
        async with admin.connect() as conn:
            assert (
                await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
            ).scalar_one()
        await asyncio.sleep(1.2)  # longer idle than the pool trusts without a check

        second = await _backend(engine)

        assert second != first
    finally:
        await engine.dispose()
        await admin.dispose()


async def test_a_connection_in_steady_use_is_handed_out_without_a_check(
    settings: Settings,
) -> None:
    """The check costs round trips, so a connection reused at once skips it: a backend
    killed a moment ago fails that one use, and the pool replaces it for the next."""
    engine = make_engine(settings, pool_size=1)
    admin = make_engine(settings, pool_size=1, pre_ping=False)
    try:
        first = await _backend(engine)
        async with admin.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        with pytest.raises(DBAPIError):
            await _backend(engine)  # not checked: the dead connection is used, and fails
        assert await _backend(engine) != first
    finally:
        await engine.dispose()
        await admin.dispose()
