"""Hears what other processes changed (PostgreSQL LISTEN/NOTIFY) and makes this API
process's caches forget it at once: revoked API keys, and new template versions.

While the listening connection is down, a change made elsewhere may go unheard: every
reconnect forgets all remembered answers, and a cache that must never be stale is only
used while ``listening`` (the key cache's TTL, ``HERALD_API_KEY_CACHE_SECONDS``, bounds
it anyway), so nothing missed outlives the outage.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg

from herald.pglisten import ChannelListener
from herald.submission import TEMPLATE_CHANNEL, latest_versions_cache
from herald.tenants import REVOCATION_CHANNEL, ApiKeyCache

# How often the listening connection is checked.
_CHECK_SECONDS = 5.0


class CacheListener:
    """One connection per process, listening on ``channel``: each payload heard goes to
    ``forget``, each (re)connect calls ``forget_all``; ``start`` once."""

    def __init__(
        self,
        database_url: str,
        channel: str,
        *,
        forget: Callable[[str], None],
        forget_all: Callable[[], None],
        about: str,
        listening: asyncio.Event | None = None,
    ) -> None:
        self._forget_all = forget_all
        self._listener = ChannelListener(
            database_url,
            channel,
            heard=forget,
            session=self._listen_on,
            about=about,
            reconnect_seconds=2.0,
        )
        self.listening = listening or asyncio.Event()

    def start(self) -> None:
        """Listen in the background until ``stop``."""
        self._listener.start()

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        await self._listener.stop()
        self.listening.clear()

    async def _listen_on(self, conn: asyncpg.Connection) -> None:
        """Listen until the connection fails (checked every few seconds)."""
        # Changes made while nobody listened are unknown: forget everything.
        self._forget_all()
        self.listening.set()
        try:
            while True:
                await asyncio.sleep(_CHECK_SECONDS)
                await conn.fetchval("SELECT 1", timeout=_CHECK_SECONDS)
        finally:
            self.listening.clear()


def revocation_listener(database_url: str, keys: ApiKeyCache) -> CacheListener:
    """Revoked API keys, forgotten by ``keys``."""
    return CacheListener(
        database_url,
        REVOCATION_CHANNEL,
        forget=keys.forget,
        forget_all=keys.forget_all,
        about="API key revocations",
    )


def template_listener(database_url: str) -> CacheListener:
    """New template versions, forgotten by the latest-versions cache (which this process
    trusts only while the listener listens)."""
    cache = latest_versions_cache()
    return CacheListener(
        database_url,
        TEMPLATE_CHANNEL,
        forget=cache.forget,
        forget_all=cache.forget_all,
        about="new template versions",
        listening=cache.listening,
    )
