"""What the health page, ``/readyz`` and ``herald doctor`` show: readiness of the backing
services, the circuit breakers of the API and the workers, RabbitMQ queue depths with
what the bridges report about them (messages held, the oldest one's age, the reason),
and Temporal pollers per task queue. Every probe is bounded in time and reports its
failure instead of raising, so the page still shows what it can during an outage.

The probes take anything with an ``engine``, a ``temporal`` client (None: not
connected) and ``settings`` (:class:`Probes`): the API's ``Backends``, or the CLI's
:class:`Deployment`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol

import aio_pika
import httpx
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from herald import amqp
from herald.contracts import Channel
from herald.db import IngestQueueReport
from herald.settings import Settings
from herald.temporal import channel_task_queue, core_task_queue

CHECK_TIMEOUT = 3.0
_BREAKER_METRIC = "herald_breaker_state"
BREAKER_STATES = {0: "closed", 1: "half-open", 2: "open"}
_NOT_CONNECTED = "not connected to Temporal"


class Probes(Protocol):
    """What the probes use: the API's ``Backends`` has it, and so has :class:`Deployment`."""

    @property
    def engine(self) -> AsyncEngine: ...

    @property
    def temporal(self) -> Client | None: ...

    @property
    def settings(self) -> Settings: ...


@dataclass(frozen=True)
class Deployment:
    """The probes' view of a deployment from outside the API (``herald doctor``)."""

    engine: AsyncEngine
    temporal: Client | None
    settings: Settings


async def _check(name: str, probe: Awaitable[Any]) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT)
    except Exception as err:
        return name, f"unavailable: {type(err).__name__}: {err}"[:300]
    return name, "ok"


async def _amqp(url: str) -> None:
    connection = await aio_pika.connect(url, timeout=CHECK_TIMEOUT)
    await connection.close()


async def _database(backends: Probes) -> None:
    async with backends.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _temporal(backends: Probes) -> None:
    if backends.temporal is None:
        raise ConnectionError(_NOT_CONNECTED)
    await backends.temporal.service_client.check_health()


async def readiness(backends: Probes) -> dict[str, str]:
    """``ok`` or what is wrong, for PostgreSQL, Temporal and RabbitMQ."""
    return dict(
        await asyncio.gather(
            _check("postgresql", _database(backends)),
            _check("temporal", _temporal(backends)),
            _check("rabbitmq", _amqp(backends.settings.amqp_url)),
        )
    )


@dataclass(frozen=True)
class BreakerReading:
    """One circuit breaker in one process."""

    source: str
    breaker: str
    state: str


def _breakers_in(source: str, exposition: str) -> list[BreakerReading]:
    readings = []
    for family in text_string_to_metric_families(exposition):
        if family.name != _BREAKER_METRIC:
            continue
        for sample in family.samples:
            readings.append(
                BreakerReading(
                    source,
                    sample.labels.get("breaker", "?"),
                    BREAKER_STATES.get(int(sample.value), str(sample.value)),
                )
            )
    return readings


async def _worker_breakers(http: httpx.AsyncClient, url: str) -> list[BreakerReading]:
    try:
        response = await http.get(url)
        response.raise_for_status()
    except httpx.HTTPError as err:
        return [BreakerReading(url, "(unreachable)", f"{type(err).__name__}")]
    return _breakers_in(url, response.text)


async def breakers(backends: Probes, also: Sequence[str] = ()) -> list[BreakerReading]:
    """Every breaker of this process and of the workers whose metrics are configured
    (``HERALD_CONSOLE_METRICS_URLS``, and the ``/metrics`` URLs in ``also``): each worker
    process has breakers of its own."""
    local = [
        BreakerReading("api", sample.labels.get("breaker", "?"), BREAKER_STATES[int(sample.value)])
        for family in REGISTRY.collect()
        if family.name == _BREAKER_METRIC
        for sample in family.samples
    ]
    configured = backends.settings.console_metrics_urls.split(",")
    urls = list(dict.fromkeys(url.strip() for url in [*configured, *also] if url.strip()))
    async with httpx.AsyncClient(timeout=CHECK_TIMEOUT) as http:
        remote = await asyncio.gather(*(_worker_breakers(http, url) for url in urls))
    return local + [reading for readings in remote for reading in readings]


_NOT_DECLARED = "not declared yet (the bridge or `herald rabbitmq setup` declares it)"


@dataclass(frozen=True)
class QueueDepth:
    """A RabbitMQ queue: messages ready and consumers, or why they are unknown."""

    name: str
    messages: int | None
    consumers: int | None
    error: str | None = None


async def queue_depths(backends: Probes) -> list[QueueDepth]:
    """Herald's RabbitMQ queues: ingest per channel, dead letters and failed sends."""
    names = [amqp.request_queue(channel) for channel in Channel] + [amqp.DEAD, amqp.FAILED]
    try:
        connection = await aio_pika.connect(backends.settings.amqp_url, timeout=CHECK_TIMEOUT)
    except Exception as err:
        return [QueueDepth(name, None, None, f"{type(err).__name__}: {err}") for name in names]
    depths = []
    try:
        for name in names:
            # A passive declare of a missing queue closes its channel: one channel each.
            channel = await connection.channel()
            try:
                messages, consumers = await asyncio.wait_for(
                    amqp.queue_depth(channel, name), CHECK_TIMEOUT
                )
                depths.append(QueueDepth(name, messages, consumers))
            except aio_pika.exceptions.ChannelNotFoundEntity:
                depths.append(QueueDepth(name, None, None, _NOT_DECLARED))
            except Exception as err:
                depths.append(QueueDepth(name, None, None, f"{type(err).__name__}: {err}"))
            finally:
                with contextlib.suppress(Exception):
                    await channel.close()
    finally:
        await connection.close()
    return depths


@dataclass(frozen=True)
class Poller:
    """A worker polling a task queue."""

    identity: str
    last_access: datetime | None


@dataclass(frozen=True)
class TaskQueuePollers:
    """Who polls one task queue for one kind of task (workflow or activity)."""

    task_queue: str
    kind: str
    pollers: list[Poller]
    error: str | None = None


async def _pollers(backends: Probes, queue: str, kind: str) -> TaskQueuePollers:
    queue_type = (
        TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
        if kind == "workflow"
        else TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
    )
    if backends.temporal is None:
        return TaskQueuePollers(queue, kind, [], _NOT_CONNECTED)
    try:
        answer = await backends.temporal.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=backends.settings.temporal_namespace,
                task_queue=TaskQueue(name=queue),
                task_queue_type=queue_type,
            ),
            timeout=timedelta(seconds=CHECK_TIMEOUT),
        )
    except Exception as err:
        return TaskQueuePollers(queue, kind, [], f"{type(err).__name__}: {err}"[:300])
    pollers = [
        Poller(
            poller.identity,
            poller.last_access_time.ToDatetime() if poller.HasField("last_access_time") else None,
        )
        for poller in answer.pollers
    ]
    return TaskQueuePollers(queue, kind, pollers)


async def task_queue_pollers(backends: Probes) -> list[TaskQueuePollers]:
    """Pollers of the core queue (workflows and local steps) and of each channel's queue."""
    prefix = backends.settings.task_queue_prefix
    wanted = [(core_task_queue(backends.settings), "workflow")] + [
        (channel_task_queue(channel, prefix), "activity") for channel in Channel
    ]
    return list(await asyncio.gather(*(_pollers(backends, queue, kind) for queue, kind in wanted)))


@dataclass(frozen=True)
class BridgeReport:
    """One bridge's last report on one ingest queue (``bridge/queue_health.py``)."""

    bridge: str
    queue: str
    held: int
    oldest_held_since: datetime | None
    last_reason: str | None
    last_reason_at: datetime | None
    ready: int | None
    stalled_since: datetime | None
    report_seconds: float
    reported_at: datetime

    def fresh(self, now: datetime) -> bool:
        """Whether the bridge still reports (a few missed rounds are allowed)."""
        return now - self.reported_at <= timedelta(seconds=3 * self.report_seconds + 10)


@dataclass(frozen=True)
class IngestQueueState:
    """An ingest queue judged from the bridges' reports (and the broker's count, when
    known): ``problem`` says what is wrong, None when nothing is."""

    queue: str
    problem: str | None
    held: int = 0
    oldest_seconds: float | None = None
    bridges: int = 0
    # ok, held, stale, unconsumed or unknown: the badge.
    kind: str = "ok"


def _duration(seconds: float) -> str:
    """``45 s``, ``3 min 5 s``, ``2 h 10 min``."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def judge_ingest_queue(
    queue: str,
    reports: Sequence[BridgeReport],
    now: datetime,
    stale_seconds: float,
    depth: QueueDepth | None = None,
) -> IngestQueueState:
    """What is wrong with ``queue``: messages a bridge holds (retrying an outage), or an
    oldest message older than ``stale_seconds``, or messages nobody consumes.

    Reports of bridges that stopped reporting are ignored: what a dead bridge held went
    back to the queue. A queue counts as not draining only if every reporting bridge
    says so, since the latest of their ``stalled_since`` (the oldest message has waited
    at least that long).
    """
    live = [report for report in reports if report.queue == queue and report.fresh(now)]
    held = sum(report.held for report in live)
    starts = [r.oldest_held_since for r in live if r.held and r.oldest_held_since is not None]
    stalled = [report.stalled_since for report in live]
    if live and all(since is not None for since in stalled):
        starts.append(max(since for since in stalled if since is not None))
    oldest = max(0.0, (now - min(starts)).total_seconds()) if starts else None
    reasons = [r for r in live if r.last_reason and r.last_reason_at is not None]
    latest = max(reasons, key=lambda r: r.last_reason_at or now, default=None)
    # The broker's count now, else the latest the bridges sampled (each samples it all).
    sampled = max((r.ready for r in live if r.ready is not None), default=None)
    ready = depth.messages if depth is not None and depth.messages is not None else sampled
    waiting = f"; {ready:,} ready" if ready else ""
    age = f", the oldest waiting {_duration(oldest)}" if oldest is not None else ""
    state = partial(IngestQueueState, queue, held=held, oldest_seconds=oldest, bridges=len(live))
    if held:
        reason = latest.last_reason if latest is not None else "no reason given"
        problem = f"{held:,} held by the bridge, retrying{waiting}{age}: {reason}"
        return state(problem, kind="held")
    if oldest is not None and oldest > stale_seconds:
        recent = (
            latest is not None
            and latest.last_reason_at is not None
            and (now - latest.last_reason_at).total_seconds() <= oldest
        )
        reason = latest.last_reason if recent and latest is not None else "no error reported"
        problem = f"not draining{waiting}{age} (over {_duration(stale_seconds)}): {reason}"
        return state(problem, kind="stale")
    if depth is not None and depth.messages and depth.consumers == 0:
        problem = f"{depth.messages:,} ready and no bridge consuming"
        return state(problem, kind="unconsumed")
    return state(None)


async def bridge_reports(engine: AsyncEngine) -> list[BridgeReport]:
    """Every bridge's last report on every ingest queue."""
    async with engine.connect() as conn:
        rows = await conn.execute(select(IngestQueueReport.__table__))
    return [BridgeReport(**row._mapping) for row in rows]


async def ingest_queues(
    backends: Probes, depths: Sequence[QueueDepth] | None = None
) -> list[IngestQueueState]:
    """Each ingest queue judged from the bridges' reports (and ``depths``, if sampled)."""
    names = [amqp.request_queue(channel) for channel in Channel]
    try:
        reports = await asyncio.wait_for(bridge_reports(backends.engine), CHECK_TIMEOUT)
    except Exception as err:
        unknown = f"the bridges' reports are unreadable: {type(err).__name__}: {err}"[:300]
        return [IngestQueueState(name, unknown, kind="unknown") for name in names]
    by_name = {depth.name: depth for depth in depths or []}
    now = datetime.now(UTC)
    stale = backends.settings.queue_stale_seconds
    return [judge_ingest_queue(name, reports, now, stale, by_name.get(name)) for name in names]


async def readiness_details(backends: Probes) -> dict[str, Any]:
    """``/readyz``'s answer: ready when PostgreSQL, Temporal and RabbitMQ answer; each
    ingest queue's state besides (a held or stale queue names its problem there, but the
    API can still take requests, so it is not a reason to be unready)."""
    checks, queues = await asyncio.gather(readiness(backends), ingest_queues(backends))
    ready = all(state == "ok" for state in checks.values())
    return {
        "status": "ready" if ready else "not ready",
        "checks": checks,
        "queues": {queue.queue: queue.problem or "ok" for queue in queues},
    }
