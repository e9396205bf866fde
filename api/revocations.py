"""Hears API key revocations from every API process (PostgreSQL LISTEN/NOTIFY) and makes
this process's key cache forget them at once.

While the listening connection is down, a revocation made elsewhere may go unheard: the
cache's TTL (``HERALD_API_KEY_CACHE_SECONDS``) bounds that, and every reconnect forgets
all remembered answers, so nothing missed outlives the outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from herald.tenants import REVOCATION_CHANNEL, ApiKeyCache

log = logging.getLogger(__name__)
_RECONNECT_SECONDS = 2.0
# How often the listening connection is checked.
_CHECK_SECONDS = 5.0


class RevocationListener:
    """One connection per API process, listening for revoked keys; ``start`` once."""

    def __init__(self, database_url: str, keys: ApiKeyCache) -> None:
        self._url = make_url(database_url)
        self._keys = keys
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    def start(self) -> None:
        """Listen in the background until ``stop``."""
        self._task = asyncio.create_task(self._run(), name="api-key-revocations")

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _heard(self, _conn: Any, _pid: int, _channel: str, digest: str) -> None:
        self._keys.forget(digest)

    async def _run(self) -> None:
        while True:
            try:
                conn = await asyncpg.connect(
                    host=self._url.host,
                    port=self._url.port or 5432,
                    user=self._url.username,
                    password=self._url.password,
                    database=self._url.database,
                    timeout=10,
                )
            except (OSError, asyncpg.PostgresError, TimeoutError) as err:
                log.warning("cannot listen for API key revocations; retrying: %s", err)
                await asyncio.sleep(_RECONNECT_SECONDS)
                continue
            try:
                await self._listen_on(conn)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as err:
                log.warning("API key revocation listener failed; reconnecting: %s", err)
            finally:
                self.listening.clear()
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)
            await asyncio.sleep(_RECONNECT_SECONDS)

    async def _listen_on(self, conn: asyncpg.Connection) -> None:
        """Listen until the connection fails (checked every few seconds)."""
        await conn.add_listener(REVOCATION_CHANNEL, self._heard)
        # Revocations made while nobody listened are unknown: forget everything.
        self._keys.forget_all()
        self.listening.set()
        while True:
            await asyncio.sleep(_CHECK_SECONDS)
            await conn.fetchval("SELECT 1", timeout=_CHECK_SECONDS)
