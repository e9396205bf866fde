"""``herald worker --queue core|email|sms|push|inapp|chat``: one worker process for one task queue.

A channel's queue (``email``, ``sms``, ``push``) runs the notifications of that channel:
``NotificationWorkflow``, its local steps (prepare, status, the first provider attempt)
and the provider activity its retries and other channels' fallbacks use, so a channel
scales by starting more of its workers. ``core`` publishes to ``herald.failed`` and
finishes the notifications started before the one-task shape (``notification_v1.py``).
SIGTERM stops polling and lets in-flight activities finish (up to
``HERALD_WORKER_SHUTDOWN_SECONDS``) before the process exits; anything still running
then is retried by Temporal on another worker. The process is gone by the end of the
grace period and ``SHUTDOWN_MARGIN`` whatever the Temporal server does.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any, TypedDict

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import PollerBehaviorSimpleMaximum, UnsandboxedWorkflowRunner, Worker

from activities.broadcasts import BroadcastActivities
from activities.digests import DigestActivities
from activities.failures import FailureActivities
from activities.flows import FlowActivities
from activities.prepare import PrepareActivities
from activities.providers.channels import (
    ChatActivities,
    EmailActivities,
    InappActivities,
    PushActivities,
    SmsActivities,
)
from activities.providers.failover import ProviderChain, channel_providers
from activities.providers.inapp import InboxChain
from activities.providers.integrations import TenantChains
from activities.providers.sendrate import SendRate
from activities.recipients import RecipientActivities
from activities.status import StatusActivities
from activities.templates import TemplateActivities
from herald import amqp
from herald.contracts import Channel
from herald.correlation import CorrelationInterceptor
from herald.db import make_engine
from herald.gcra import Gcra
from herald.runtime import service
from herald.settings import Settings
from herald.temporal import channel_task_queue, connect_when_available, core_task_queue
from workflows.broadcast import BroadcastWorkflow
from workflows.digest import DigestWorkflow
from workflows.flow import FlowRunWorkflow
from workflows.flow_fanout import FlowFanOutWorkflow
from workflows.notification import NotificationWorkflow
from workflows.notification_v1 import NotificationWorkflowV1

log = logging.getLogger(__name__)

QUEUES = ("core", "email", "sms", "push", "inapp", "chat")
# After the grace period the SDK cancels what still runs and hands back every result.
# With Temporal unreachable it retries each hand-back in turn (about ten seconds per
# task), so a core worker holding many workflow tasks took minutes to stop. What was not
# handed back by the end of this margin is retried by Temporal, as after a crash.
SHUTDOWN_MARGIN = timedelta(seconds=5)


def core_worker(
    client: Client,
    settings: Settings,
    engine: AsyncEngine,
    concurrency: int,
    publisher: amqp.Publisher | None = None,
) -> Worker:
    """The worker for ``publish_failed``, digests, and the first version's runs and steps.

    ``publisher`` reaches RabbitMQ for ``herald.failed``; it connects on first use, so the
    worker starts (and works) while RabbitMQ is down.
    """
    status = StatusActivities(engine)
    publisher = publisher or amqp.Publisher(settings, declare=True, name="herald-worker-core")
    activities: Sequence[Any] = [
        status.record_accepted,
        status.record_status,
        RecipientActivities(engine).load_recipient,
        TemplateActivities(engine, settings).render_template,
        FailureActivities(publisher).publish_failed,
        *DigestActivities(engine, client, settings).registered(),
        *BroadcastActivities(engine, client, settings).activities,
        *FlowActivities(engine, client, settings).activities,
    ]
    return Worker(
        client,
        task_queue=core_task_queue(settings),
        workflows=[
            NotificationWorkflowV1,
            DigestWorkflow,
            BroadcastWorkflow,
            FlowRunWorkflow,
            FlowFanOutWorkflow,
        ],
        # Workflows run outside Temporal's sandbox: it costs about a third of this worker's
        # CPU per notification. The sandbox's check for non-deterministic calls runs in
        # the tests instead, which replay every history they produce inside it
        # (tests/workflows/test_replay.py).
        workflow_runner=UnsandboxedWorkflowRunner(),
        activities=activities,
        max_concurrent_activities=concurrency,
        max_concurrent_local_activities=concurrency,
        graceful_shutdown_timeout=grace_period(settings),
        interceptors=[CorrelationInterceptor()],
    )


class Slots(TypedDict):
    """A worker's slot limits and pollers (``Worker``'s keyword arguments of those names)."""

    max_concurrent_activities: int
    max_concurrent_local_activities: int
    max_concurrent_workflow_tasks: int
    workflow_task_poller_behavior: PollerBehaviorSimpleMaximum
    nonsticky_to_sticky_poll_ratio: float
    activity_task_poller_behavior: PollerBehaviorSimpleMaximum


def channel_slots(concurrency: int, settings: Settings) -> Slots:
    """A channel worker's slots for ``concurrency`` sends at once, and its pollers (also
    the benchmarks' baseline worker's, so that a ratio to it compares workflows, not
    settings): twice as many notifications in hand as sends, the next ones prepared while
    the provider holds the current ones (its connections bound the sends)."""
    return Slots(
        max_concurrent_activities=concurrency,
        max_concurrent_local_activities=2 * concurrency,
        max_concurrent_workflow_tasks=2 * concurrency,
        # A clean notification is one workflow task, mostly met on the channel's queue
        # rather than the sticky one: the ratio sets how many polls wait there.
        workflow_task_poller_behavior=PollerBehaviorSimpleMaximum(
            settings.worker_workflow_task_polls
        ),
        nonsticky_to_sticky_poll_ratio=settings.worker_nonsticky_poll_ratio,
        activity_task_poller_behavior=PollerBehaviorSimpleMaximum(
            settings.worker_activity_task_polls
        ),
    )


def channel_worker(
    client: Client,
    channel: Channel,
    settings: Settings,
    engine: AsyncEngine,
    http: httpx.AsyncClient,
    concurrency: int,
) -> tuple[ProviderChain, Worker]:
    """The worker of one channel: its notifications' workflows, their local steps and
    the channel's provider activity (also their first attempt, run locally)."""
    templates = TemplateActivities(engine, settings)
    provider, send = channel_activity(channel, settings, engine, http, templates)
    status = StatusActivities(engine)
    prepare = PrepareActivities(engine, templates)
    worker = Worker(
        client,
        task_queue=channel_task_queue(channel, settings.task_queue_prefix),
        workflows=[NotificationWorkflow],
        # See core_worker: the sandbox's checks run in the replay tests.
        workflow_runner=UnsandboxedWorkflowRunner(),
        activities=[send, prepare.prepare, status.record_status, status.record_accepted],
        **channel_slots(concurrency, settings),
        # Temporal paces the regular activity; the first attempt (a local activity) takes
        # its turn from the shared limiter in Redis (activities/providers/sendrate.py).
        max_task_queue_activities_per_second=channel_rate(channel, settings),
        graceful_shutdown_timeout=grace_period(settings),
        interceptors=[CorrelationInterceptor()],
    )
    return provider, worker


def channel_activity(
    channel: Channel,
    settings: Settings,
    engine: AsyncEngine,
    http: httpx.AsyncClient,
    templates: TemplateActivities | None = None,
) -> tuple[ProviderChain, Any]:
    """The channel's providers (in failover order, each behind a circuit breaker) and
    its registered activity (``templates``: where a body left out of the history comes
    from, the worker's ``prepare``)."""
    if channel is Channel.inapp:  # stored in PostgreSQL: no provider to pace or fail over
        inbox = InboxChain(engine)
        return inbox, InappActivities(inbox, engine, templates=templates).send_inapp
    provider = channel_providers(channel, settings, http)
    per_second = channel_rate(channel, settings)
    rate = None
    if per_second is not None:
        key = f"herald:sendrate:{settings.task_queue_prefix}:{channel.value}"
        rate = SendRate(Gcra(settings.redis_url), key, per_second)
    # Tenants with integrations of the channel send through those instead.
    tenants = TenantChains(channel, provider, engine, settings, http)
    if channel is Channel.email:
        return provider, EmailActivities(provider, engine, rate, tenants, templates).send_email
    if channel is Channel.sms:
        return provider, SmsActivities(provider, engine, rate, tenants, templates).send_sms
    if channel is Channel.chat:
        return provider, ChatActivities(provider, engine, rate, tenants, templates).send_chat
    return provider, PushActivities(provider, engine, rate, tenants, templates).send_push


def grace_period(settings: Settings) -> timedelta:
    """How long in-flight tasks may finish after SIGTERM."""
    return timedelta(seconds=settings.worker_shutdown_seconds)


def exit_hard_after(deadline: timedelta, queue: str) -> threading.Timer:
    """Arm a hard exit of the process ``deadline`` from now; cancel it once shut down.

    A thread, not a task: it fires even if the SDK's shutdown holds up the event loop.
    """

    def hard_exit() -> None:
        log.error(
            "worker shutdown did not finish in time; exiting now, Temporal retries the "
            "tasks this worker still held",
            extra={"queue": queue, "after_seconds": deadline.total_seconds()},
        )
        os._exit(1)

    timer = threading.Timer(deadline.total_seconds(), hard_exit)
    timer.daemon = True
    timer.start()
    return timer


def channel_rate(channel: Channel, settings: Settings) -> float | None:
    """The channel's sending rate limit, held across all its workers (``sendrate.py``)."""
    rate: float | None = getattr(settings, f"{channel.value}_rate_per_second", None)
    return rate


def worker_pools(
    settings: Settings, concurrency: int, closing: AsyncExitStack
) -> tuple[AsyncEngine, httpx.AsyncClient]:
    """A worker's database pool and HTTP client for ``concurrency`` sends at once, closed
    by ``closing``."""
    engine = make_engine(
        settings, pool_size=min(concurrency, settings.database_pool_size), pre_ping=False
    )
    closing.push_async_callback(engine.dispose)
    http = httpx.AsyncClient(
        timeout=settings.provider_timeout_seconds,
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
    )
    closing.push_async_callback(http.aclose)
    return engine, http


async def run_worker(settings: Settings, queue: str, concurrency: int | None = None) -> None:
    """Run one worker until SIGTERM/SIGINT, then shut down gracefully."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}; expected one of {', '.join(QUEUES)}")
    concurrency = concurrency or settings.worker_concurrency
    async with service(f"worker {queue}", settings) as running, AsyncExitStack() as closing:
        # A worker (re)started while Temporal is down waits for it rather than exiting.
        client = await connect_when_available(settings, running.stop, running.runtime)
        if client is None:
            return
        engine, http = worker_pools(settings, concurrency, closing)
        if queue == "core":
            publisher = amqp.Publisher(settings, declare=True, name="herald-worker-core")
            closing.push_async_callback(publisher.close)
            worker = core_worker(client, settings, engine, concurrency, publisher)
        else:
            provider, worker = channel_worker(
                client, Channel(queue), settings, engine, http, concurrency
            )
            closing.push_async_callback(provider.close)

        log.info("worker started", extra={"queue": queue, "concurrency": concurrency})
        async with worker:
            running.ready()
            await running.stop.wait()
            if running.metrics:
                running.metrics.ready.clear()
            log.info("worker stopping: finishing in-flight tasks", extra={"queue": queue})
            watchdog = exit_hard_after(grace_period(settings) + SHUTDOWN_MARGIN, queue)
        try:
            await closing.aclose()  # the clients, while the hard exit still guards us
        finally:
            watchdog.cancel()
