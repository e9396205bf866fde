"""SIGTERM ends every worker and the bridge within the grace period (and a small margin)
even when Temporal has gone away while they hold work: what they could not hand back,
Temporal retries, as after a crash.

Before, a core worker holding workflow tasks retried handing each back in turn, about
ten seconds apiece, and was still alive minutes after SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from temporalio.api.enums.v1 import EventType

from devtools.devserver import TemporalDevServer
from devtools.processes import ManagedProcess, wait_http
from devtools.sinks import Rule, Sinks
from herald.contracts import Channel, QueuedNotification, workflow_id_for
from herald.producer import NotificationProducer
from herald.temporal import connect
from tests.bridge.support import FAST_RETRY, TcpProxy, own_stack
from tests.harness import Stack, new_run_id, new_tenant, own_temporal, producer_settings
from workers.main import SHUTDOWN_MARGIN

GRACE = 2.0
# Gone by grace + margin; the rest is room for a loaded machine, far below the minutes a
# hanging worker takes.
EXIT_WITHIN = GRACE + SHUTDOWN_MARGIN.total_seconds() + 20.0
HELD = 10
STOPPED = ("worker-core", "worker-email", "worker-sms", "worker-push", "bridge")


@pytest.fixture(scope="module")
def doomed_temporal(run_dir: Path) -> Iterator[TemporalDevServer]:
    """A Temporal dev server this module kills."""
    server = own_temporal(run_dir, "temporal-shutdown")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shutdown_stack(
    doomed_temporal: TemporalDevServer, sinks: Sinks, run_dir: Path
) -> Iterator[Stack]:
    """A Herald of its own on that server, with a short grace period."""
    with own_stack(
        doomed_temporal.address,
        sinks,
        run_dir / "temporal-shutdown",
        worker_shutdown_seconds=GRACE,
        bridge_shutdown_seconds=GRACE,
        **FAST_RETRY,
    ) as stack:
        yield stack


@pytest.fixture
def core_database(shutdown_stack: Stack) -> Iterator[TcpProxy]:
    """The core worker restarted to reach PostgreSQL through a proxy the test can cut."""
    url = make_url(shutdown_stack.settings.database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    through_proxy = url.set(host="127.0.0.1", port=proxy.port)
    core = shutdown_stack.processes["worker-core"]
    core.stop()
    core.env = {
        **core.env,
        "HERALD_DATABASE_URL": through_proxy.render_as_string(hide_password=False),
    }
    core.start()
    wait_http(f"http://127.0.0.1:{shutdown_stack.metrics_ports['worker-core']}/readyz")
    yield proxy
    proxy.stop()


async def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout}s"
        await asyncio.sleep(0.1)


async def _still_running(processes: list[ManagedProcess], timeout: float) -> list[str]:
    """The names of the processes still running after ``timeout``."""
    deadline = time.monotonic() + timeout
    while any(p.alive for p in processes) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    return [p.name for p in processes if p.alive]


async def test_sigterm_ends_workers_and_bridge_while_temporal_is_unreachable(
    shutdown_stack: Stack,
    doomed_temporal: TemporalDevServer,
    sinks: Sinks,
    core_database: TcpProxy,
) -> None:
    stack = shutdown_stack
    tenant = await new_tenant(stack, f"shutdown-{new_run_id()}")
    user = await tenant.user()
    key = await tenant.template("email", "<p>Hi</p>", "Hi")

    # The email worker is inside a send when Temporal goes away ...
    sinks.state.add_rule(Rule(match=user["email"], delay=30.0))
    await tenant.send("email", user["id"], key)
    await _wait_until(lambda: sinks.state.attempts.get(user["email"], 0) >= 1, 60, "the email send")
    # ... the core worker holds workflow tasks whose first step waits for PostgreSQL ...
    core_database.cut()
    held = [await tenant.send("email", user["id"], key) for _ in range(HELD)]
    await tenant.client.aclose()
    temporal = await connect(stack.settings)

    async def in_hand() -> int:
        count = 0
        for nid in held:
            history = await temporal.get_workflow_handle(workflow_id_for(nid)).fetch_history()
            count += history.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
        return count

    deadline = time.monotonic() + 60
    while await in_hand() < HELD:
        assert time.monotonic() < deadline, "the core worker did not take every workflow task"
        await asyncio.sleep(0.5)

    doomed_temporal.stop(kill=True)
    # ... and the bridge holds a message whose workflow start it keeps retrying.
    as_producer = await producer_settings(stack.settings, tenant.name)
    async with NotificationProducer(settings=as_producer) as producer:
        await producer.publish(
            QueuedNotification(
                id=uuid.uuid4(),
                tenant=tenant.name,
                channel=Channel.email,
                user_id=user["id"],
                template=key,
            )
        )
    await asyncio.sleep(1.0)

    processes = [stack.processes[name] for name in STOPPED]
    assert [p.name for p in processes if not p.alive] == []
    for process in processes:
        assert process.process is not None
        process.process.send_signal(signal.SIGTERM)
    still_running = await _still_running(processes, EXIT_WITHIN)
    assert still_running == [], f"still running {EXIT_WITHIN}s after SIGTERM: {still_running}"
