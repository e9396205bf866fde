"""``HERALD_API_EAGER``: an email worker inside the API process, for eager workflow starts.

A start that asks for it (``request_eager_start``) gets the new workflow's first task in
its answer when a worker of that task queue runs on the same client in the same process;
a clean email is that one task, so it is sent without a round trip through the queue.
The worker is the email worker of ``herald worker --queue email`` (``channel_worker``)
with its own database pool and HTTP client; it also polls the queue like any other.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from temporalio.client import Client

from herald.contracts import Channel
from herald.settings import Settings
from workers.main import channel_worker, worker_pools

log = logging.getLogger(__name__)

# Only email for now: one in-process worker per channel would multiply the API's pools.
EAGER_CHANNELS = (Channel.email,)


@asynccontextmanager
async def eager_workers(client: Client, settings: Settings) -> AsyncIterator[None]:
    """Run the API's channel workers on ``client`` (not lazy: a worker needs a connected
    one) while inside; on exit they finish what they hold, up to the workers' grace
    period (``HERALD_WORKER_SHUTDOWN_SECONDS``), then the pools close."""
    concurrency = settings.worker_concurrency
    async with AsyncExitStack() as running:
        engine, http = worker_pools(settings, concurrency, running)
        for channel in EAGER_CHANNELS:
            provider, worker = channel_worker(client, channel, settings, engine, http, concurrency)
            running.push_async_callback(provider.close)
            await running.enter_async_context(worker)
        log.info(
            "eager start on: channel workers run in the API process",
            extra={"channels": [channel.value for channel in EAGER_CHANNELS]},
        )
        yield
