"""RabbitMQ restarted (``rabbitmqctl stop_app`` / ``start_app``) while 500 messages flow,
against a Herald of its own: the bridge's consumers come back by themselves and every
message is processed once."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.devserver import TemporalDevServer
from devtools.sinks import Sinks
from herald.db import make_engine
from tests.bridge.support import (
    FAST_RETRY,
    INGEST_QUEUES,
    assert_all_sent_once,
    broker_consumers,
    own_stack,
    publish_batch,
    wait_accepted,
)
from tests.harness import Stack, new_run_id, new_tenant


def rabbitmqctl(*args: str) -> None:
    """Run ``rabbitmqctl ARGS`` and fail loudly if it does."""
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def restart_stack(
    temporal_server: TemporalDevServer, sinks: Sinks, run_dir: Path
) -> Iterator[Stack]:
    """A Herald of its own for the restart."""
    with own_stack(
        temporal_server.address, sinks, run_dir / "rabbitmq-restart", **FAST_RETRY
    ) as stack:
        yield stack


async def test_consumers_reattach_by_themselves_after_a_rabbitmq_restart(
    restart_stack: Stack,
) -> None:
    stack = restart_stack
    tenant = await new_tenant(stack, f"tenant-{new_run_id()}")
    ids = await publish_batch(stack.settings, tenant, 300)
    engine = make_engine(stack.settings, pool_size=1)
    try:
        assert await wait_accepted(engine, ids, 30) < len(ids), "drained before the restart"
    finally:
        await engine.dispose()

    rabbitmqctl("stop_app")  # every connection of every vhost drops, in-flight acks are lost
    try:
        await asyncio.sleep(2)
    finally:
        rabbitmqctl("start_app")
        rabbitmqctl("await_startup")

    deadline = time.monotonic() + 60
    while broker_consumers(stack.settings) != sorted(INGEST_QUEUES):
        assert time.monotonic() < deadline, broker_consumers(stack.settings)
        await asyncio.sleep(1)
    ids += await publish_batch(stack.settings, tenant, 200)  # and new messages flow after it

    assert len(ids) == 500
    await assert_all_sent_once(stack.settings, ids)
    assert stack.processes["bridge"].alive
    assert broker_consumers(stack.settings) == sorted(INGEST_QUEUES)
