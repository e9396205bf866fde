"""``herald webhooks``: one dispatcher process, until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging

import httpx

from herald.db import make_engine
from herald.runtime import service
from herald.settings import Settings
from webhooks.delivery import REQUEST_TIMEOUT_SECONDS
from webhooks.dispatcher import Dispatcher

log = logging.getLogger(__name__)


async def run_webhooks(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Dispatch until ``stop`` is set (or a signal arrives), then finish what is in flight."""
    async with service("webhook dispatcher", settings, stop) as running:
        engine = make_engine(settings, pool_size=4)
        client = httpx.AsyncClient(
            timeout=REQUEST_TIMEOUT_SECONDS,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=settings.webhook_concurrency),
            # Proxies from the environment would be a way around the address check.
            trust_env=False,
        )
        log.info("webhook dispatcher started", extra={"concurrency": settings.webhook_concurrency})
        try:
            await Dispatcher(settings, engine, client).run(running.stop, running.ready_event())
        finally:
            await client.aclose()
            await engine.dispose()
