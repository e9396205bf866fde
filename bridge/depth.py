"""The depth of the ingest queues, sampled by every bridge for the "ingest queue growing"
alert (``herald_queue_depth``, ``deploy/prometheus/alerts.yml``).

A bridge that keeps up leaves nothing ready in its queues; a backlog that grows for
minutes means the bridges (or Temporal behind them) take less than producers send. The
sample is a passive declare on a connection of its own, so it never holds up a consumer.
Each round also tells the bridge's :class:`~bridge.queue_health.IngestHealth` what is
ready (so it knows a queue that does not drain) and publishes its report.
"""

from __future__ import annotations

import asyncio
import logging

import aio_pika

from bridge.queue_health import IngestHealth, QueueHealthReporter
from herald import amqp
from herald.contracts import Channel
from herald.metrics import QUEUE_DEPTH
from herald.settings import Settings

log = logging.getLogger(__name__)

_PUBLISH_TIMEOUT = 10.0


async def sample_queue_depths(
    settings: Settings,
    health: IngestHealth | None = None,
    reporter: QueueHealthReporter | None = None,
) -> None:
    """Set ``herald_queue_depth`` for every ingest queue every
    ``HERALD_BACKLOG_SAMPLE_SECONDS`` until cancelled, and publish ``reporter``'s report
    after each sample; an outage skips what it prevents."""
    connection: aio_pika.abc.AbstractRobustConnection | None = None
    try:
        while True:
            try:
                if connection is None:
                    connection = await aio_pika.connect_robust(
                        settings.amqp_url,
                        timeout=10,
                        client_properties={"connection_name": "herald-bridge-queue-depth"},
                    )
                async with await connection.channel() as channel:
                    for kind in Channel:
                        name = amqp.request_queue(kind)
                        messages, _ = await amqp.queue_depth(channel, name)
                        QUEUE_DEPTH.labels(name).set(messages)
                        if health is not None:
                            health.sampled(name, messages)
            except Exception as err:
                log.warning("ingest queue depth not sampled", extra={"error": str(err)})
            if reporter is not None:
                try:
                    # Bounded: a database that hangs must not stop the depth samples.
                    await asyncio.wait_for(reporter.publish(), _PUBLISH_TIMEOUT)
                except Exception as err:  # PostgreSQL down: the rows go stale, as they should
                    log.warning("ingest queue health not published", extra={"error": str(err)})
            await asyncio.sleep(settings.backlog_sample_seconds)
    finally:
        if connection is not None:
            await connection.close()
