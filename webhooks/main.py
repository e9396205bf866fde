"""``herald webhooks``: one dispatcher process, until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

import httpx

from herald.db import make_engine
from herald.metrics import start_process_metrics
from herald.settings import Settings
from webhooks.delivery import REQUEST_TIMEOUT_SECONDS
from webhooks.dispatcher import Dispatcher

log = logging.getLogger(__name__)


async def run_webhooks(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Dispatch until ``stop`` is set (or a signal arrives), then finish what is in flight."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    metrics, _ = start_process_metrics(settings)
    engine = make_engine(settings, pool_size=4)
    ready = asyncio.Event()
    if metrics is not None:

        async def report_ready() -> None:
            await ready.wait()
            metrics.ready.set()

        readiness = asyncio.create_task(report_ready())
    client = httpx.AsyncClient(
        timeout=REQUEST_TIMEOUT_SECONDS,
        follow_redirects=False,
        limits=httpx.Limits(max_connections=settings.webhook_concurrency),
        # Proxies from the environment would be a way around the address check.
        trust_env=False,
    )
    log.info("webhook dispatcher started", extra={"concurrency": settings.webhook_concurrency})
    try:
        await Dispatcher(settings, engine, client).run(stop, ready)
    finally:
        if metrics is not None:
            readiness.cancel()
            metrics.stop()
        await client.aclose()
        await engine.dispose()
    log.info("webhook dispatcher stopped")
