"""The bridge process dying or stopping mid-batch, and PostgreSQL going away under it:
no message lost, no workflow started twice, nothing dead-lettered for an outage."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.deadletters import list_dead
from devtools.processes import ManagedProcess
from herald import amqp
from tests.bridge.support import (
    FAST_RETRY,
    INGEST_QUEUES,
    TcpProxy,
    assert_each_started_once,
    bridge_process,
    publish_batch,
    queue_state,
    statuses,
    wait_accepted,
    wait_consumers,
    wait_statuses,
)
from tests.harness import Stack, Tenant


async def test_sigkill_mid_batch_loses_nothing_and_starts_nothing_twice(
    stack: Stack, bridge: ManagedProcess, engine: AsyncEngine, tenant: Tenant
) -> None:
    ids = await publish_batch(stack.settings, tenant, 200)
    accepted = await wait_accepted(engine, ids, 40)
    bridge.kill()  # prefetched and half-started messages are in flight right now
    assert accepted < len(ids), "the batch finished before the kill; nothing was in flight"

    bridge.start()
    await wait_statuses(engine, ids, "sent")
    await assert_each_started_once(stack.settings, ids)


async def test_sigterm_finishes_and_acks_in_flight_starts_before_exiting(
    stack: Stack, bridge: ManagedProcess, engine: AsyncEngine, tenant: Tenant
) -> None:
    # More than the bridge has prefetched (3 queues times HERALD_BRIDGE_PREFETCH) and can
    # finish while it stops, so some are still queued when it has gone.
    ids = await publish_batch(stack.settings, tenant, 500)
    await wait_accepted(engine, ids, 40)
    assert bridge.stop(timeout=30) == 0

    # Everything is either started (and acked) or back in its queue: nothing in between.
    # (The broker takes a moment to count returned messages as ready again.)
    deadline = time.monotonic() + 60
    while True:
        state = await queue_state(stack.settings, INGEST_QUEUES)
        queued = sum(ready for ready, _ in state.values())
        started = len(await statuses(engine, ids))
        if queued + started == len(ids) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert queued + started == len(ids), (queued, started)
    assert queued > 0, "the batch finished before the stop; nothing was in flight"

    bridge.start()
    await wait_statuses(engine, ids, "sent")
    await assert_each_started_once(stack.settings, ids)


@pytest.fixture
async def bridge_behind_proxy(
    stack: Stack, bridge: ManagedProcess, run_dir: Path
) -> AsyncIterator[tuple[ManagedProcess, TcpProxy]]:
    """The only bridge on the vhost, reaching PostgreSQL through a proxy we can cut."""
    url = make_url(stack.settings.database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    bridge.stop(timeout=20)
    process = bridge_process(
        stack.settings, run_dir / "logs", "bridge-proxied-db", database_url=proxied, **FAST_RETRY
    ).start()
    try:
        await wait_consumers(stack.settings)
        yield process, proxy
    finally:
        process.stop(timeout=20)
        proxy.stop()
        bridge.start()
        await wait_consumers(stack.settings)


async def test_postgresql_outage_keeps_messages_unacked_until_it_returns(
    stack: Stack,
    engine: AsyncEngine,
    tenant: Tenant,
    bridge_behind_proxy: tuple[ManagedProcess, TcpProxy],
) -> None:
    process, proxy = bridge_behind_proxy
    proxy.cut()
    ids = await publish_batch(stack.settings, tenant, 60)
    await asyncio.sleep(8)  # several retry rounds against a database that is not there

    assert process.alive
    assert await statuses(engine, ids) == {}
    dead = await list_dead(stack.settings, [amqp.DEAD], limit=10_000)
    assert not {entry.notification_id for entry in dead} & {str(i) for i in ids}

    proxy.restore()
    await wait_statuses(engine, ids, "sent", timeout=120)
    await assert_each_started_once(stack.settings, ids)
