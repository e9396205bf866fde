"""One PostgreSQL ``LISTEN`` connection kept for as long as the process runs.

A ``ChannelListener`` holds its own asyncpg connection (not one of the engine's pool: a
connection handed back to the pool would stop hearing), ``LISTEN``s on one channel and
then runs its owner's ``session`` with that connection until the connection fails. It
then closes the connection, waits ``reconnect_seconds`` and starts over, for good, until
``stop``.

A notification sent while no connection listens is lost, so an owner's ``session`` starts
by making up for what it may have missed: the inbox hub reads the event log from its
horizon, the API's key cache forgets every key it remembered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

# What a refused connection raises; one lost in use may also raise InterfaceError.
_CONNECT_ERRORS = (OSError, asyncpg.PostgresError, TimeoutError)
_SESSION_ERRORS = (*_CONNECT_ERRORS, asyncpg.InterfaceError)


class ChannelListener:
    """A background task listening on ``channel``: ``heard`` gets each notification's
    payload, ``session`` runs while connected (until the connection fails, which it
    notices by using it); ``about`` names what is listened for in the log. ``start``
    once, ``stop`` at exit."""

    def __init__(
        self,
        database_url: str,
        channel: str,
        *,
        heard: Callable[[str], None],
        session: Callable[[asyncpg.Connection], Awaitable[None]],
        about: str,
        reconnect_seconds: float = 1.0,
    ) -> None:
        self._url = make_url(database_url)
        self._channel = channel
        self._heard = heard
        self._session = session
        self._about = about
        self._reconnect_seconds = reconnect_seconds
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Listen in the background until ``stop``."""
        self._task = asyncio.create_task(self._run(), name=f"listen-{self._channel}")

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._heard(payload)

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            host=self._url.host,
            port=self._url.port or 5432,
            user=self._url.username,
            password=self._url.password,
            database=self._url.database,
            timeout=10,
        )

    async def _run(self) -> None:
        while True:
            try:
                conn = await self._connect()
            except _CONNECT_ERRORS as err:
                log.warning("cannot listen for %s; retrying: %s", self._about, err)
                await asyncio.sleep(self._reconnect_seconds)
                continue
            try:
                await conn.add_listener(self._channel, self._notified)
                await self._session(conn)
            except _SESSION_ERRORS as err:
                log.warning("listening for %s failed; reconnecting: %s", self._about, err)
            finally:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)
            await asyncio.sleep(self._reconnect_seconds)
