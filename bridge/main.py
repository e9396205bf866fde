"""``herald bridge``: one bridge process, until SIGTERM or SIGINT.

It waits for Temporal and RabbitMQ at start-up instead of failing, so it can be started
before them; PostgreSQL is reached per message and waited out like any outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AsyncExitStack

from temporalio.client import Client
from temporalio.runtime import Runtime

from bridge.consumer import Bridge
from bridge.depth import sample_queue_depths
from bridge.ingest import Ingest
from bridge.queue_health import QueueHealthReporter
from herald import amqp
from herald.db import make_engine
from herald.producers import ProducerCache
from herald.runtime import service
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
    async with service("bridge", settings, stop) as running, AsyncExitStack() as closing:
        temporal = await _temporal(settings, running.stop, running.runtime)
        if temporal is None:
            return
        engine = make_engine(settings)
        closing.push_async_callback(engine.dispose)
        dead_letters = amqp.Publisher(settings, name="herald-bridge-dead-letters")
        closing.push_async_callback(dead_letters.close)
        bridge = Bridge(
            settings,
            Ingest(settings, temporal, engine),
            ProducerCache(engine),
            dead_letters,
            ready=running.ready_event(),
        )
        reporter = QueueHealthReporter(
            engine, bridge.health, bridge.name, settings.backlog_sample_seconds
        )
        if await bridge.start(running.stop):
            log.info("bridge started", extra={"prefetch": settings.bridge_prefetch})
            depths = asyncio.create_task(sample_queue_depths(settings, bridge.health, reporter))
            await running.stop.wait()
            depths.cancel()
            # Finished before the rows are withdrawn, so no late report brings them back.
            with contextlib.suppress(asyncio.CancelledError):
                await depths
            await bridge.stop()
            try:
                await reporter.withdraw()
            except Exception as err:  # its rows go stale instead
                log.warning("ingest queue health not withdrawn", extra={"error": str(err)})
