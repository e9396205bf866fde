"""The consumers: one per ingest queue, each on its own channel with bounded prefetch,
acknowledging a message only once its workflow start is durable.

- A message belongs to the tenant mapped to the AMQP user that published it: its
  ``user_id`` property, which RabbitMQ checks against the publishing connection's user
  (``herald.producers``). A message without one, or from a user that is not a producer,
  is dead-lettered as from an unauthenticated producer; the body's ``tenant``, if any, is
  only checked against the producer's (by the ingest).
- A message is handled in its own task, so a slow start never blocks its queue; at most
  ``bridge_prefetch`` messages per queue are in flight.
- An outage (PostgreSQL, Temporal, RabbitMQ for dead-letters) keeps the message unacked
  while the handler retries with backoff. The broker never sees a return, so an outage
  never counts against the queue's delivery limit and nothing is dead-lettered for it.
- An invalid message is published to ``herald.dead`` with the reason in
  ``x-herald-error`` (confirmed), then acknowledged. AMQP cannot attach a header to a
  reject, so the bridge dead-letters explicitly; the queue's own dead-lettering covers
  messages that exceed the delivery limit.
- An unexpected error requeues the message; the delivery limit bounds how often.
- The connection is robust: after a broker restart aio-pika reopens the channels and
  consumers. A watchdog checks that each consumer really is attached again and, if one
  stays missing, rebuilds the connection from scratch.
- ``stop`` cancels the consumers, lets in-flight starts finish and acknowledges them, and
  only then closes the connection; what is still unacked returns to its queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError, ChannelPreconditionFailed

from bridge.ingest import Ingest, InvalidMessage, Outcome, is_transient
from bridge.queue_health import IngestHealth, bridge_name, describe_outage, requeue_reason
from herald import amqp
from herald.backoff import Stopped, retry
from herald.contracts import Channel
from herald.dataerrors import is_data_error
from herald.logs import log_context
from herald.metrics import QUEUE_MESSAGES, QUEUE_START_LATENCY
from herald.producers import ProducerCache
from herald.settings import Settings
from herald.tenants import TenantContext

log = logging.getLogger(__name__)

# Header values are capped: the body is what matters for a replay.
_REASON_LIMIT = 1_000
# A consumer that stays detached this many watchdog rounds gets a new connection.
_DETACHED_ROUNDS = 3
# Headers that describe one trip through the queues, not the request; and the producer
# header, which only the bridge writes (a producer's own value is never kept).
_TRIP_HEADERS = (
    "x-delivery-count",
    "x-death",
    "x-first-death-exchange",
    amqp.PRODUCER_HEADER,
)


@dataclass
class Consumer:
    """One queue's consumer: its own channel (and so its own prefetch) and tag."""

    kind: Channel
    channel: AbstractRobustChannel
    queue: AbstractQueue
    tag: str

    async def attached(self) -> bool:
        """Whether the broker is delivering to this consumer right now."""
        if self.channel.is_closed:
            return False
        try:
            underlay = await self.channel.get_underlay_channel()
        except ChannelInvalidStateError:
            return False
        return isinstance(underlay, aiormq.Channel) and self.tag in underlay.consumers


def _open(message: AbstractIncomingMessage) -> bool:
    """Whether the channel the message came on is still open (an ack can still land)."""
    try:
        return not message.channel.is_closed
    except ChannelInvalidStateError:
        return False


def _rabbitmq_down(err: BaseException) -> bool:
    """Whether connecting failed because RabbitMQ is unreachable or not answering."""
    return isinstance(err, AMQPError | OSError | TimeoutError)


def _unavailable_not_misconfigured(err: BaseException) -> bool:
    """Whether connecting failed for an outage rather than for a queue Herald cannot use
    (one declared with other arguments), which no retry fixes."""
    return _rabbitmq_down(err) and not isinstance(err, ChannelPreconditionFailed)


def _rabbitmq_unavailable(err: BaseException, retry_in: float) -> None:
    log.warning(
        "RabbitMQ unavailable; retrying",
        extra={"error": f"{type(err).__name__}: {err}", "retry_in": retry_in},
    )


def _published(message: AbstractIncomingMessage) -> float | None:
    """When the producer says it published the message (the ``timestamp`` property)."""
    return message.timestamp.timestamp() if message.timestamp else None


def _deliveries(message: AbstractIncomingMessage) -> int:
    """How many times the queue has delivered this message before (quorum queues say)."""
    count = (message.headers or {}).get("x-delivery-count", 0)
    return int(count) if isinstance(count, int) else 0


class Bridge:
    """Consumes ``herald.email``, ``herald.sms`` and ``herald.push`` into workflow starts."""

    def __init__(
        self,
        settings: Settings,
        ingest: Ingest,
        producers: ProducerCache,
        dead_letters: amqp.Publisher,
        ready: threading.Event | None = None,
    ) -> None:
        self._settings = settings
        self._producers = producers
        # Set while every consumer is attached (the metrics port's /readyz).
        self._ready = ready or threading.Event()
        self._ingest = ingest
        self._dead_letters = dead_letters
        self._connection: AbstractRobustConnection | None = None
        # Strong references: aio-pika only restores channels that are still alive.
        self._consumers: list[Consumer] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._watchdog: asyncio.Task[None] | None = None
        # Set by ``stop``: no new messages, no more reconnecting.
        self._stop = asyncio.Event()
        self._outage_since: float | None = None
        self._instance = uuid.uuid4().hex[:8]
        # Held messages and stalls per queue, for the health page (bridge/queue_health.py).
        self.name = bridge_name(self._instance)
        self.health = IngestHealth(amqp.request_queue(kind) for kind in Channel)

    @property
    def in_flight(self) -> int:
        """Messages taken off a queue and not yet settled."""
        return len(self._tasks)

    async def start(self, stop: asyncio.Event | None = None) -> bool:
        """Connect (retrying until RabbitMQ answers or ``stop`` is set) and start consuming.

        Returns False if ``stop`` was set before a connection could be made.
        """
        try:
            await self._connect_when_available(stop, when=_unavailable_not_misconfigured)
        except ChannelPreconditionFailed as err:
            # A queue exists with other arguments (e.g. another delivery limit):
            # retrying cannot help. Change it with a policy, or delete the queue.
            log.error("RabbitMQ topology differs from Herald's", extra={"error": str(err)})
            raise
        except Stopped:
            return False
        self._ready.set()
        self._watchdog = asyncio.create_task(self._watch())
        return True

    async def _connect_when_available(
        self, stop: asyncio.Event | None, when: Callable[[BaseException], bool]
    ) -> None:
        """Connect, retrying with backoff while ``when`` says the failure is an outage;
        raises ``Stopped`` if ``stop`` is set first."""
        await retry(
            self._connect_or_close,
            initial=self._settings.bridge_retry_initial_seconds,
            maximum=self._settings.bridge_retry_maximum_seconds,
            when=when,
            on_retry=_rabbitmq_unavailable,
            stop=stop,
        )

    async def _connect_or_close(self) -> None:
        """Connect, leaving nothing half-open behind if that fails."""
        try:
            await self._connect()
        except Exception:
            await self._close_connection()
            raise

    async def _connect(self) -> None:
        settings = self._settings
        connection = await aio_pika.connect_robust(
            settings.amqp_url,
            timeout=10,
            reconnect_interval=settings.amqp_reconnect_seconds,
            client_properties={"connection_name": f"herald-bridge-{self._instance}"},
        )
        self._connection = connection
        setup = await connection.channel()
        await amqp.declare_topology(setup, settings)
        await setup.close()
        consumers = []
        for kind in Channel:
            channel = await connection.channel()
            assert isinstance(channel, AbstractRobustChannel)
            await channel.set_qos(prefetch_count=settings.bridge_prefetch)
            queue = await channel.declare_queue(
                amqp.request_queue(kind),
                durable=True,
                arguments=amqp.request_queue_arguments(settings),
            )
            tag = await queue.consume(
                partial(self._on_message, kind),
                consumer_tag=f"herald-bridge-{self._instance}-{kind.value}",
            )
            consumers.append(Consumer(kind, channel, queue, tag))
        self._consumers = consumers
        connection.reconnect_callbacks.add(self._on_reconnect)
        log.info(
            "consuming",
            extra={
                "queues": [amqp.request_queue(kind) for kind in Channel],
                "prefetch": settings.bridge_prefetch,
            },
        )

    def _on_reconnect(self, *_: object) -> None:
        # aio-pika calls this once it has reopened the channels and their consumers; the
        # watchdog double-checks that the broker really delivers to each of them again.
        log.info("reconnected to RabbitMQ; channels and consumers restored")

    async def _on_message(self, kind: Channel, message: AbstractIncomingMessage) -> None:
        if self._stop.is_set():
            return  # unacked: it goes back to its queue when the connection closes
        task = asyncio.create_task(self._handle(kind, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, kind: Channel, message: AbstractIncomingMessage) -> None:
        """Settle one message: start, dead-letter or requeue; wait out outages."""
        # Producers publish with the notification id as message id (herald.producer).
        with log_context(
            request_id=message.correlation_id or message.message_id,
            notification_id=message.message_id,
        ):
            await self._settle(kind, message)

    async def _settle(self, kind: Channel, message: AbstractIncomingMessage) -> None:
        queue = amqp.request_queue(kind)
        context = {"queue": queue, "message_id": message.message_id}
        started = time.monotonic()

        def waiting(err: BaseException, retry_in: float) -> None:
            self._unavailable(err, retry_in)
            self.health.hold(queue, id(message), describe_outage(err), _published(message))

        try:
            outcome = await retry(
                partial(self._process, kind, message),
                initial=self._settings.bridge_retry_initial_seconds,
                maximum=self._settings.bridge_retry_maximum_seconds,
                # An outage is waited out while the message is still ours to settle.
                when=lambda err: is_transient(err) and _open(message),
                on_retry=waiting,
            )
        except Exception as err:
            self.health.release(queue, id(message))
            if is_transient(err):
                # Its channel is gone, so is our claim on it: the broker redelivers it.
                log.info("delivery channel closed; left to redelivery", extra=context)
            else:
                await self._requeue(kind, message, err, context)
            return
        self.health.release(queue, id(message))
        self._available()
        await self._ack(message, outcome, {**context, "seconds": time.monotonic() - started})

    def _unavailable(self, err: BaseException, retry_in: float) -> None:
        """Log an outage once as it starts (every held message would say the same)."""
        error = f"{type(err).__name__}: {err}"
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            log.warning(
                "a service is unavailable; holding messages unacked and retrying",
                extra={"error": error, "in_flight": self.in_flight},
            )
        else:
            log.debug("still unavailable", extra={"error": error, "retry_in": retry_in})

    def _available(self) -> None:
        if self._outage_since is not None:
            log.info(
                "services available again",
                extra={"outage_seconds": round(time.monotonic() - self._outage_since, 1)},
            )
            self._outage_since = None

    async def _process(self, kind: Channel, message: AbstractIncomingMessage) -> Outcome:
        try:
            return await self._ingest.submit(
                message.body,
                kind,
                producer=await self._producer(message),
                request_id=message.correlation_id or message.message_id,
            )
        except InvalidMessage as err:
            await self._dead_letter(kind, message, str(err))
            return Outcome.dead_lettered

    async def _producer(self, message: AbstractIncomingMessage) -> TenantContext:
        """The tenant of the AMQP user that published ``message``; raises
        :class:`InvalidMessage` for a message no producer can be held to."""
        user = message.user_id
        if not user:
            raise InvalidMessage(
                "unauthenticated producer: the message has no user_id property "
                "(publish with user_id set to your AMQP user, as herald.producer does)"
            )
        producer = await self._producers.tenant_for(user)
        if producer is None:
            raise InvalidMessage(
                f"unauthenticated producer: AMQP user {user!r} is not mapped to a tenant "
                "(herald producer add)"
            )
        return producer

    async def _dead_letter(
        self, kind: Channel, message: AbstractIncomingMessage, reason: str
    ) -> None:
        """Publish the message unchanged to ``herald.dead`` with why; confirmed.

        The copy is the bridge's own publish (its ``user_id`` is the bridge's user), so the
        producer's authenticated user travels in ``x-herald-producer``: a replay sends as
        the producer it came from, whoever replays it.
        """
        headers: dict[str, Any] = {
            key: value for key, value in (message.headers or {}).items() if key not in _TRIP_HEADERS
        }
        headers[amqp.ERROR_HEADER] = reason[:_REASON_LIMIT]
        headers[amqp.QUEUE_HEADER] = amqp.request_queue(kind)
        if message.user_id:
            headers[amqp.PRODUCER_HEADER] = message.user_id
        copy = aio_pika.Message(
            message.body,
            headers=headers,
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.message_id or f"dead-{uuid.uuid4().hex}",
            correlation_id=message.correlation_id,
            timestamp=message.timestamp,
            type=message.type,
            app_id=message.app_id,
        )
        await self._dead_letters.publish(amqp.DEAD, message.routing_key or kind.value, copy)
        log.warning(
            "message dead-lettered",
            extra={
                "queue": amqp.request_queue(kind),
                "message_id": message.message_id,
                "reason": reason[:_REASON_LIMIT],
            },
        )

    async def _requeue(
        self,
        kind: Channel,
        message: AbstractIncomingMessage,
        err: Exception,
        context: dict[str, Any],
    ) -> None:
        """Give a message that hit an unexpected error back, or up on its last delivery."""
        log.error("unexpected error handling a message", extra=context, exc_info=err)
        deliveries = _deliveries(message) + 1
        try:
            if is_data_error(err):
                # Data a store refused is the message's fault: no delivery will do better.
                reason = f"refused as data: {type(err).__name__}: {err}"
                await self._dead_letter(kind, message, reason)
                await self._ack(message, Outcome.dead_lettered, context)
                return
            if deliveries >= self._settings.bridge_delivery_limit:
                reason = f"gave up after {deliveries} deliveries: {type(err).__name__}: {err}"
                await self._dead_letter(kind, message, reason)
                await self._ack(message, Outcome.dead_lettered, context)
                return
            # A pause, so a message that fails at once does not spin through its limit.
            await asyncio.sleep(self._settings.bridge_retry_initial_seconds)
            await message.nack(requeue=True)
        except (AMQPError, ChannelInvalidStateError, amqp.PublishFailed):
            log.warning("could not requeue; left to redelivery", extra=context)
            return
        self.health.requeued(
            context["queue"],
            message.message_id or f"delivery-{message.delivery_tag}",
            requeue_reason(err),
            _published(message),
        )
        QUEUE_MESSAGES.labels(context["queue"], Outcome.requeued.value).inc()
        log.info("message requeued", extra={**context, "outcome": Outcome.requeued.value})

    async def _ack(
        self, message: AbstractIncomingMessage, outcome: Outcome, context: dict[str, Any]
    ) -> None:
        try:
            await message.ack()
        except (AMQPError, ChannelInvalidStateError):
            # Redelivered later, and then recognised as a duplicate.
            log.warning("ack lost with its channel", extra={**context, "outcome": outcome.value})
            return
        self.health.settled(context["queue"], message.message_id)
        QUEUE_MESSAGES.labels(context["queue"], outcome.value).inc()
        if outcome is Outcome.started and "seconds" in context:
            QUEUE_START_LATENCY.labels(context["queue"]).observe(context["seconds"])
        if outcome is not Outcome.dead_lettered:
            log.info("message settled", extra={**context, "outcome": outcome.value})

    async def _watch(self) -> None:
        """Check every few seconds that each consumer is attached; rebuild if one is not."""
        detached: dict[Channel, int] = {}
        while not self._stop.is_set():
            await asyncio.sleep(self._settings.bridge_watchdog_seconds)
            connection = self._connection
            if connection is None or not connection.connected.is_set():
                self._ready.clear()
                continue  # aio-pika is reconnecting; judge once it says it is connected
            for consumer in self._consumers:
                if await consumer.attached():
                    if detached.pop(consumer.kind, 0):
                        log.info("consumer attached again", extra={"queue": consumer.queue.name})
                    continue
                detached[consumer.kind] = detached.get(consumer.kind, 0) + 1
                log.warning(
                    "consumer detached",
                    extra={"queue": consumer.queue.name, "rounds": detached[consumer.kind]},
                )
            if detached:
                self._ready.clear()
            else:
                self._ready.set()
            if any(rounds >= _DETACHED_ROUNDS for rounds in detached.values()):
                log.error("consumers did not come back; reconnecting from scratch")
                detached.clear()
                await self._reconnect()

    async def _reconnect(self) -> None:
        await self._close_connection()
        with contextlib.suppress(Stopped):
            await self._connect_when_available(self._stop, when=_rabbitmq_down)

    async def stop(self) -> None:
        """Stop consuming, finish and acknowledge in-flight messages, then disconnect."""
        self._stop.set()
        self._ready.clear()
        if self._watchdog is not None:
            self._watchdog.cancel()
        for consumer in self._consumers:
            try:
                await consumer.queue.cancel(consumer.tag, timeout=5)
            except (AMQPError, ChannelInvalidStateError, TimeoutError):
                log.info("consumer already gone", extra={"queue": consumer.queue.name})
        pending = set(self._tasks)
        log.info("stopping: finishing in-flight messages", extra={"in_flight": len(pending)})
        if pending:
            _, pending = await asyncio.wait(pending, timeout=self._settings.bridge_shutdown_seconds)
        for task in pending:
            task.cancel()
        if pending:
            log.warning(
                "abandoned unfinished messages; they return to their queues",
                extra={"count": len(pending)},
            )
        await self._close_connection()

    async def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        self._consumers = []
        if connection is not None:
            try:
                await connection.close()
            except Exception:  # closing a broken connection has nothing left to release
                log.debug("closing the AMQP connection failed", exc_info=True)
