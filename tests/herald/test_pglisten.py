"""A LISTEN connection on a real PostgreSQL (``herald.pglisten``, under the inbox stream
and the API key revocations): notifications on its channel, and only those, reach
``heard``; a connection the server kills is replaced, its session runs again and
notifications are heard once more; ``stop`` closes the connection."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
from sqlalchemy.engine import make_url

from herald.pglisten import ChannelListener
from tests.api.in_process import in_process_settings


async def test_a_killed_listening_connection_is_replaced_and_hears_again() -> None:
    url = make_url(in_process_settings().database_url).set(database="postgres")
    channel = f"herald_test_{uuid.uuid4().hex}"
    heard: asyncio.Queue[str] = asyncio.Queue()
    sessions: asyncio.Queue[int] = asyncio.Queue()

    async def session(conn: asyncpg.Connection) -> None:
        await sessions.put(await conn.fetchval("SELECT pg_backend_pid()"))
        while True:  # as the owners do: notice a dead connection by using it
            await conn.fetchval("SELECT 1")
            await asyncio.sleep(0.05)

    listener = ChannelListener(
        url.render_as_string(hide_password=False),
        channel,
        heard=heard.put_nowait,
        session=session,
        about="a test channel",
        reconnect_seconds=0.05,
    )
    admin = await asyncpg.connect(
        url.set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        listener.start()
        first = await asyncio.wait_for(sessions.get(), 10)
        await admin.execute("SELECT pg_notify($1, 'elsewhere')", f"{channel}_other")
        await admin.execute("SELECT pg_notify($1, 'one')", channel)
        assert await asyncio.wait_for(heard.get(), 10) == "one"

        assert await admin.fetchval("SELECT pg_terminate_backend($1)", first)
        second = await asyncio.wait_for(sessions.get(), 10)
        assert second != first
        await admin.execute("SELECT pg_notify($1, 'two')", channel)
        assert await asyncio.wait_for(heard.get(), 10) == "two"

        await listener.stop()
        deadline = time.monotonic() + 5
        while await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", second):
            assert time.monotonic() < deadline, "stop left the connection open"
            await asyncio.sleep(0.05)
        assert heard.empty()
    finally:
        await listener.stop()
        await admin.close()
