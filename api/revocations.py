"""Hears API key revocations from every API process (PostgreSQL LISTEN/NOTIFY) and makes
this process's key cache forget them at once.

While the listening connection is down, a revocation made elsewhere may go unheard: the
cache's TTL (``HERALD_API_KEY_CACHE_SECONDS``) bounds that, and every reconnect forgets
all remembered answers, so nothing missed outlives the outage.
"""

from __future__ import annotations

import asyncio

import asyncpg

from herald.pglisten import ChannelListener
from herald.tenants import REVOCATION_CHANNEL, ApiKeyCache

# How often the listening connection is checked.
_CHECK_SECONDS = 5.0


class RevocationListener:
    """One connection per API process, listening for revoked keys; ``start`` once."""

    def __init__(self, database_url: str, keys: ApiKeyCache) -> None:
        self._keys = keys
        self._listener = ChannelListener(
            database_url,
            REVOCATION_CHANNEL,
            heard=keys.forget,
            session=self._listen_on,
            about="API key revocations",
            reconnect_seconds=2.0,
        )
        self.listening = asyncio.Event()

    def start(self) -> None:
        """Listen in the background until ``stop``."""
        self._listener.start()

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        await self._listener.stop()

    async def _listen_on(self, conn: asyncpg.Connection) -> None:
        """Listen until the connection fails (checked every few seconds)."""
        # Revocations made while nobody listened are unknown: forget everything.
        self._keys.forget_all()
        self.listening.set()
        try:
            while True:
                await asyncio.sleep(_CHECK_SECONDS)
                await conn.fetchval("SELECT 1", timeout=_CHECK_SECONDS)
        finally:
            self.listening.clear()
