"""Workers started while Temporal is down wait for it instead of exiting."""

from __future__ import annotations

import asyncio
from pathlib import Path

from devtools.devserver import TemporalDevServer
from devtools.sinks import Sinks
from herald.ports import free_port
from herald.settings import Settings
from tests.harness import Stack, new_run_id, new_tenant, wait_for_status


async def test_workers_started_before_temporal_wait_for_it_then_deliver(
    settings: Settings, sinks: Sinks, tmp_path: Path
) -> None:
    server = TemporalDevServer(tmp_path / "temporal.db", port=free_port(), headless=True)
    late = settings.model_copy(
        update={
            "temporal_address": server.address,
            "task_queue_prefix": f"late-{new_run_id()}",
            "api_port": free_port(),
        }
    )
    stack = Stack(late, tmp_path / "logs", queues=("core", "sms"))
    try:
        stack.start()  # the API connects lazily; the workers must not give up
        await asyncio.sleep(3)
        for name in ("worker-core", "worker-sms"):
            assert stack.processes[name].alive, f"{name} exited while Temporal was down"
        await asyncio.to_thread(server.start)

        tenant = await new_tenant(stack, f"late-{new_run_id()}")
        user = await tenant.user()
        key = await tenant.template("sms", "Hello after the outage", None)
        nid = await tenant.send("sms", user["id"], key)

        final = await wait_for_status(tenant.client, nid, timeout=90)
        assert final["status"] == "sent"
        assert [m.body for m in sinks.state.received("sms", to=user["phone"])] == [
            "Hello after the outage"
        ]
        await tenant.client.aclose()
    finally:
        stack.stop()
        server.stop()
