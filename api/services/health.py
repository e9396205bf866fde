"""What the health page and ``/readyz`` show: readiness of the backing services, the
circuit breakers of the API and the workers, RabbitMQ queue depths and Temporal pollers
per task queue. Every probe is bounded in time and reports its failure instead of
raising, so the page still shows what it can during an outage."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aio_pika
import httpx
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from api.backends import Backends
from herald import amqp
from herald.contracts import Channel
from herald.temporal import channel_task_queue, core_task_queue

CHECK_TIMEOUT = 3.0
_BREAKER_METRIC = "herald_breaker_state"
BREAKER_STATES = {0: "closed", 1: "half-open", 2: "open"}


async def _check(name: str, probe: Awaitable[Any]) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT)
    except Exception as err:
        return name, f"unavailable: {type(err).__name__}: {err}"[:300]
    return name, "ok"


async def _amqp(url: str) -> None:
    connection = await aio_pika.connect(url, timeout=CHECK_TIMEOUT)
    await connection.close()


async def _database(backends: Backends) -> None:
    async with backends.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def readiness(backends: Backends) -> dict[str, str]:
    """``ok`` or what is wrong, for PostgreSQL, Temporal and RabbitMQ."""
    return dict(
        await asyncio.gather(
            _check("postgresql", _database(backends)),
            _check("temporal", backends.temporal.service_client.check_health()),
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


async def breakers(backends: Backends) -> list[BreakerReading]:
    """Every breaker of this API process and of the workers whose metrics are configured
    (``HERALD_CONSOLE_METRICS_URLS``): each worker process has breakers of its own."""
    local = [
        BreakerReading("api", sample.labels.get("breaker", "?"), BREAKER_STATES[int(sample.value)])
        for family in REGISTRY.collect()
        if family.name == _BREAKER_METRIC
        for sample in family.samples
    ]
    urls = [url.strip() for url in backends.settings.console_metrics_urls.split(",") if url.strip()]
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


async def queue_depths(backends: Backends) -> list[QueueDepth]:
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


async def _pollers(backends: Backends, queue: str, kind: str) -> TaskQueuePollers:
    queue_type = (
        TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
        if kind == "workflow"
        else TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
    )
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


async def task_queue_pollers(backends: Backends) -> list[TaskQueuePollers]:
    """Pollers of the core queue (workflows and local steps) and of each channel's queue."""
    prefix = backends.settings.task_queue_prefix
    wanted = [(core_task_queue(backends.settings), "workflow")] + [
        (channel_task_queue(channel, prefix), "activity") for channel in Channel
    ]
    return list(await asyncio.gather(*(_pollers(backends, queue, kind) for queue, kind in wanted)))
