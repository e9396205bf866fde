"""The Temporal server stopped for 20 s while messages arrive, against a Herald (and a
Temporal dev server) of its own: nothing is dead-lettered, all is processed once after."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.deadletters import list_dead
from devtools.devserver import TemporalDevServer
from devtools.sinks import Sinks
from herald import amqp
from tests.bridge.support import (
    FAST_RETRY,
    assert_all_sent_once,
    own_stack,
    publish_batch,
)
from tests.harness import Stack, new_run_id, new_tenant, own_temporal


@pytest.fixture(scope="module")
def outage_temporal(run_dir: Path) -> Iterator[TemporalDevServer]:
    """A Temporal dev server this module may stop (file-backed: it keeps its state)."""
    server = own_temporal(run_dir, "temporal-outage")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def outage_stack(
    outage_temporal: TemporalDevServer, sinks: Sinks, run_dir: Path
) -> Iterator[Stack]:
    """A Herald of its own on that server."""
    with own_stack(
        outage_temporal.address, sinks, run_dir / "temporal-outage", **FAST_RETRY
    ) as stack:
        yield stack


async def test_temporal_outage_delays_messages_and_dead_letters_none(
    outage_stack: Stack, outage_temporal: TemporalDevServer
) -> None:
    stack = outage_stack
    tenant = await new_tenant(stack, f"tenant-{new_run_id()}")
    await assert_all_sent_once(stack.settings, await publish_batch(stack.settings, tenant, 3))

    outage_temporal.stop()
    try:
        ids = await publish_batch(stack.settings, tenant, 100)
        await asyncio.sleep(20)
        assert stack.processes["bridge"].alive
        dead = await list_dead(stack.settings, [amqp.DEAD], limit=10_000)
        assert dead == [], [entry.reason for entry in dead]
    finally:
        outage_temporal.start()

    await assert_all_sent_once(stack.settings, ids)
