"""Helpers for the bridge tests: RabbitMQ queue state, notification states in PostgreSQL,
workflow runs in Temporal, bridge processes, and a TCP proxy that can cut a connection."""

from __future__ import annotations

import asyncio
import collections
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aio_pika
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.deadletters import DeadMessage, list_dead
from devtools.processes import ManagedProcess, herald_argv
from devtools.sinks import Sinks
from herald import amqp
from herald.contracts import Channel, QueuedNotification
from herald.db import Notification, make_engine
from herald.migrate import drop_database, ensure_database, upgrade
from herald.producer import NotificationProducer
from herald.settings import Settings
from herald.temporal import connect
from tests.harness import (
    Stack,
    Tenant,
    new_run_id,
    producer_settings,
    rabbitmq_vhost,
    test_settings,
)

INGEST_QUEUES = tuple(amqp.request_queue(kind) for kind in Channel)
# Bridge retries back off to this at most, so a recovered outage is noticed quickly.
FAST_RETRY: dict[str, Any] = {"bridge_retry_maximum_seconds": 2.0, "bridge_watchdog_seconds": 2.0}


async def assert_all_sent_once(settings: Settings, ids: Sequence[uuid.UUID]) -> None:
    """Every notification ends ``sent`` and has exactly one workflow run."""
    engine = make_engine(settings, pool_size=1)
    try:
        await wait_statuses(engine, ids, "sent", timeout=240)
    finally:
        await engine.dispose()
    await assert_each_started_once(settings, ids)


def vhost(settings: Settings) -> str:
    """The RabbitMQ vhost the settings point at."""
    return urlparse(settings.amqp_url).path.lstrip("/") or "/"


def bridge_process(
    settings: Settings, log_dir: Path, name: str = "bridge", **overrides: Any
) -> ManagedProcess:
    """A ``herald bridge`` child process with these settings (and overrides)."""
    env = settings.model_copy(update=overrides).as_env()
    return ManagedProcess(name, herald_argv("bridge"), env, log_dir)


async def queue_state(settings: Settings, names: Iterable[str]) -> dict[str, tuple[int, int]]:
    """``{queue: (ready messages, consumers)}`` as the broker reports them now."""
    connection = await aio_pika.connect(settings.amqp_url, timeout=10)
    try:
        channel = await connection.channel()
        return {name: await amqp.queue_depth(channel, name) for name in names}
    finally:
        await connection.close()


def broker_consumers(settings: Settings) -> list[str]:
    """The queues with a consumer in the settings' vhost (``rabbitmqctl list_consumers``)."""
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_consumers", "-p", vhost(settings), "queue_name"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return sorted(line.strip() for line in out.splitlines()[1:] if line.strip())


async def wait_consumers(settings: Settings, timeout: float = 60.0) -> None:
    """Wait until every ingest queue has a consumer."""
    deadline = time.monotonic() + timeout
    state: dict[str, tuple[int, int]] = {}
    while time.monotonic() < deadline:
        try:
            state = await queue_state(settings, INGEST_QUEUES)
            if all(consumers >= 1 for _, consumers in state.values()):
                return
        except (aio_pika.exceptions.AMQPError, OSError):
            pass  # not declared yet, or the broker is starting
        await asyncio.sleep(0.3)
    raise AssertionError(f"ingest queues without consumers after {timeout}s: {state}")


async def statuses(engine: AsyncEngine, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The current status of each notification that has a row."""
    found: dict[uuid.UUID, str] = {}
    async with engine.connect() as conn:
        for start in range(0, len(ids), 1000):
            rows = await conn.execute(
                select(Notification.id, Notification.status).where(
                    Notification.id.in_(ids[start : start + 1000])
                )
            )
            found.update({row.id: row.status for row in rows})
    return found


async def wait_statuses(
    engine: AsyncEngine,
    ids: Sequence[uuid.UUID],
    wanted: str = "sent",
    timeout: float = 180.0,
) -> dict[uuid.UUID, str]:
    """Wait until every notification has status ``wanted``; fail with a summary if not."""
    deadline = time.monotonic() + timeout
    found: dict[uuid.UUID, str] = {}
    while time.monotonic() < deadline:
        found = await statuses(engine, ids)
        if len(found) == len(ids) and all(status == wanted for status in found.values()):
            return found
        await asyncio.sleep(0.5)
    summary = collections.Counter(found.get(i, "no row") for i in ids)
    raise AssertionError(f"after {timeout}s, wanted all {wanted}: {dict(summary)}")


async def workflow_runs(settings: Settings, ids: Iterable[uuid.UUID]) -> collections.Counter[str]:
    """How many workflow runs each notification id has (every run, open or closed)."""
    wanted = {f"notification-{i}" for i in ids}
    client = await connect(settings)
    runs: collections.Counter[str] = collections.Counter()
    query = "WorkflowType = 'NotificationWorkflow'"
    async for execution in client.list_workflows(query, page_size=1000):
        if execution.id in wanted:
            runs[execution.id] += 1
    return runs


async def wait_workflow_runs(
    settings: Settings, ids: Sequence[uuid.UUID], timeout: float = 30.0
) -> collections.Counter[str]:
    """Runs per notification once visibility shows one for each (it lags a little)."""
    deadline = time.monotonic() + timeout
    runs: collections.Counter[str] = collections.Counter()
    while time.monotonic() < deadline:
        runs = await workflow_runs(settings, ids)
        if len(runs) >= len(ids):
            return runs
        await asyncio.sleep(0.5)
    return runs


def requests(
    tenant: str, user_id: str, templates: dict[Channel, str], count: int
) -> list[QueuedNotification]:
    """``count`` distinct requests, channels taken in turn."""
    kinds = list(templates)
    return [
        QueuedNotification(
            id=uuid.uuid4(),
            tenant=tenant,
            channel=kinds[i % len(kinds)],
            user_id=user_id,
            template=templates[kinds[i % len(kinds)]],
            data={"n": i},
        )
        for i in range(count)
    ]


async def publish_batch(settings: Settings, tenant: Tenant, count: int) -> list[uuid.UUID]:
    """Queue ``count`` requests over all channels for a new user of ``tenant``, published
    by the tenant's producer; their ids."""
    user = await tenant.user()
    await tenant.device(user["id"])
    templates = {
        Channel.email: await tenant.template("email", "n={{ n }}", "n={{ n }}"),
        Channel.sms: await tenant.template("sms", "n={{ n }}", None),
        Channel.push: await tenant.template("push", "n={{ n }}", "n={{ n }}"),
    }
    batch = requests(tenant.name, user["id"], templates, count)
    as_producer = await producer_settings(settings, tenant.name)
    async with NotificationProducer(settings=as_producer) as producer:
        await producer.publish_many(batch)
    return [item.id for item in batch]


def herald_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``herald ARGS`` against these settings."""
    return subprocess.run(
        herald_argv(*args),
        env={**os.environ, **settings.as_env()},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def wait_dead(
    settings: Settings, message_ids: set[str], queue: str = amqp.DEAD, timeout: float = 60.0
) -> dict[str, DeadMessage]:
    """The listed messages of ``queue`` named by ``message_ids``, once all are there."""
    deadline = time.monotonic() + timeout
    found: dict[str, DeadMessage] = {}
    while time.monotonic() < deadline:
        listed = await list_dead(settings, [queue], limit=10_000)
        found = {
            name: entry
            for entry in listed
            for name in (entry.message_id, entry.notification_id)
            if name in message_ids
        }
        if set(found) >= message_ids:
            return found
        await asyncio.sleep(0.5)
    raise AssertionError(f"not in {queue} after {timeout}s: {message_ids - set(found)}")


async def wait_accepted(engine: AsyncEngine, ids: Sequence[uuid.UUID], at_least: int) -> int:
    """Wait until at least ``at_least`` of ``ids`` have been accepted; how many have."""
    deadline = time.monotonic() + 120
    while True:
        accepted = len(await statuses(engine, ids))
        if accepted >= at_least:
            return accepted
        assert time.monotonic() < deadline, f"only {accepted} accepted after 120s"
        await asyncio.sleep(0.05)


async def assert_each_started_once(settings: Settings, ids: Sequence[uuid.UUID]) -> None:
    """Every notification has exactly one workflow run."""
    runs = await wait_workflow_runs(settings, ids)
    assert len(runs) == len(ids), f"{len(ids) - len(runs)} notifications without a workflow"
    assert set(runs.values()) == {1}, runs.most_common(3)


class TcpProxy:
    """Forwards a local port to ``target``; ``cut`` refuses and drops every connection until
    ``restore`` (a network outage for whoever connects through it). Runs in its own thread."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> TcpProxy:
        """Start forwarding."""
        self._thread.start()
        self.restore()
        return self

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        self._call(self._cut())

    def restore(self) -> None:
        """Accept and forward connections again."""
        self._call(self._listen())

    def stop(self) -> None:
        """Cut and stop the thread."""
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


@contextmanager
def own_stack(
    temporal_address: str, sinks: Sinks, log_dir: Path, **overrides: Any
) -> Iterator[Stack]:
    """A whole Herald with its own database, vhost and task queues, bridge included, for a
    test that disturbs shared services; stopped and its vhost removed afterwards."""
    run_id = new_run_id()
    # Small pools: PostgreSQL's connections are shared with every other test session.
    settings = test_settings(
        run_id, temporal_address, sinks, **{"database_pool_size": 3, **overrides}
    )
    asyncio.run(ensure_database(settings.database_url))
    upgrade(settings.database_url)
    rabbitmq_vhost(vhost(settings), create=True)
    stack = Stack(settings, log_dir, bridge=True).start()
    try:
        asyncio.run(wait_consumers(settings))
        yield stack
    finally:
        stack.stop()
        rabbitmq_vhost(vhost(settings), create=False)
        asyncio.run(drop_database(settings.database_url))
