"""``herald bridge``: one bridge process, until SIGTERM or SIGINT.

It waits for Temporal and RabbitMQ at start-up instead of failing, so it can be started
before them; PostgreSQL is reached per message and waited out like any outage.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from temporalio.client import Client
from temporalio.runtime import Runtime

from bridge.consumer import Bridge
from bridge.depth import sample_queue_depths
from bridge.ingest import Ingest
from herald import amqp
from herald.db import make_engine
from herald.metrics import start_process_metrics
from herald.settings import Settings
from herald.temporal import connect_when_available

log = logging.getLogger(__name__)


async def _temporal(
    settings: Settings, stop: asyncio.Event, runtime: Runtime | None
) -> Client | None:
    """A Temporal client, retrying until the server answers (None if stopped first)."""
    return await connect_when_available(
        settings,
        stop,
        runtime,
        initial_delay=settings.bridge_retry_initial_seconds,
        maximum_delay=settings.bridge_retry_maximum_seconds,
    )


async def run_bridge(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Consume until ``stop`` is set (or a signal arrives), then shut down gracefully."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    metrics, runtime = start_process_metrics(settings)
    temporal = await _temporal(settings, stop, runtime)
    if temporal is None:
        return
    engine = make_engine(settings)
    dead_letters = amqp.Publisher(settings, name="herald-bridge-dead-letters")
    bridge = Bridge(
        settings,
        Ingest(settings, temporal, engine),
        dead_letters,
        ready=metrics.ready if metrics else None,
    )
    try:
        if await bridge.start(stop):
            log.info("bridge started", extra={"prefetch": settings.bridge_prefetch})
            depths = asyncio.create_task(sample_queue_depths(settings))
            await stop.wait()
            depths.cancel()
            await bridge.stop()
    finally:
        await dead_letters.close()
        await engine.dispose()
        if metrics:
            metrics.stop()
    log.info("bridge stopped")
