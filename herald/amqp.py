"""RabbitMQ for Herald: the topology every process agrees on, and publishing that is either
confirmed by the broker or an error.

The topology, declared idempotently by ``herald rabbitmq setup``, the bridge and the core
worker:

- direct exchange ``herald.requests``, routing key = channel, into the quorum queues
  ``herald.email``, ``herald.sms`` and ``herald.push``. Each dead-letters into
  ``herald.dead`` when a message is rejected or has been delivered
  ``bridge_delivery_limit`` times, so a message that crashes its consumer cannot loop
  forever;
- fanout exchange and quorum queue ``herald.dead``: messages that can never be
  processed, the reason in the header ``x-herald-error``;
- fanout exchange and quorum queue ``herald.failed``: notifications whose retries are
  exhausted (:class:`herald.contracts.FailedNotification`). Downstream consumers bind
  their own queues to the exchange; the queue keeps them for ``herald dead replay``.

Every message Herald publishes carries ``user_id``, the AMQP user of its connection.
RabbitMQ refuses a publish whose ``user_id`` is not the connection's user, so the bridge
can take it as the producer's authenticated identity (``herald.producers``).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractQueue,
)
from aio_pika.exceptions import (
    AMQPError,
    ChannelInvalidStateError,
    ChannelNotFoundEntity,
    DeliveryError,
    PublishError,
)

from herald.contracts import Channel
from herald.settings import Settings

log = logging.getLogger(__name__)

REQUESTS_EXCHANGE = "herald.requests"
DEAD = "herald.dead"
FAILED = "herald.failed"
ERROR_HEADER = "x-herald-error"
# Where a message the bridge dead-lettered itself was consumed from.
QUEUE_HEADER = "x-herald-queue"
# The authenticated AMQP user who published a message the bridge dead-lettered itself
# (the copy is the bridge's publish, so its own ``user_id`` is the bridge's user).
PRODUCER_HEADER = "x-herald-producer"
# Whom AMQP clients (aio-pika included) log in as when the URL names no user.
DEFAULT_USER = "guest"
JSON = "application/json"

_QUORUM: dict[str, Any] = {"x-queue-type": "quorum"}


def request_queue(channel: Channel | str) -> str:
    """The ingest queue of one channel: ``herald.email``, ``herald.sms``, ``herald.push``."""
    return f"herald.{Channel(channel).value}"


def request_queue_arguments(settings: Settings) -> dict[str, Any]:
    """Quorum, dead-lettering into ``herald.dead`` on reject or after the delivery limit.

    ``at-least-once`` dead-lettering keeps a message in its queue until ``herald.dead``
    has it; it needs ``reject-publish`` overflow, which only matters with a length limit.
    """
    return {
        **_QUORUM,
        "x-delivery-limit": settings.bridge_delivery_limit,
        "x-dead-letter-exchange": DEAD,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


async def declare_topology(channel: AbstractChannel, settings: Settings) -> dict[Channel, str]:
    """Declare every exchange, queue and binding (a no-op when they exist as declared).

    Returns the ingest queue name of each channel. A queue that exists with other
    arguments is an error (``PRECONDITION_FAILED``), never silently different.
    """
    for name in (DEAD, FAILED):
        exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.FANOUT, durable=True)
        queue = await channel.declare_queue(name, durable=True, arguments=_QUORUM)
        await queue.bind(exchange, routing_key="")
    requests = await channel.declare_exchange(
        REQUESTS_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
    )
    names: dict[Channel, str] = {}
    for kind in Channel:
        queue = await channel.declare_queue(
            request_queue(kind), durable=True, arguments=request_queue_arguments(settings)
        )
        await queue.bind(requests, routing_key=kind.value)
        names[kind] = queue.name
    return names


async def setup(settings: Settings) -> dict[Channel, str]:
    """Connect, declare the topology, disconnect (``herald rabbitmq setup``)."""
    connection = await aio_pika.connect(settings.amqp_url, timeout=10)
    try:
        return await declare_topology(await connection.channel(), settings)
    finally:
        await connection.close()


def url_user(url: str) -> str:
    """The AMQP user a connection to ``url`` logs in as."""
    username = urlsplit(url).username
    return unquote(username) if username else DEFAULT_USER


def url_vhost(url: str) -> str:
    """The vhost a connection to ``url`` opens (``/`` when the URL names none)."""
    return unquote(urlsplit(url).path[1:]) or "/"


def url_with_login(url: str, user: str, password: str) -> str:
    """``url`` with another user and password (for a producer's own connection)."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    login = f"{quote(user, safe='')}:{quote(password, safe='')}"
    return urlunsplit(parts._replace(netloc=f"{login}@{host}{port}"))


def json_message(
    body: bytes,
    *,
    message_id: str,
    headers: dict[str, Any] | None = None,
    correlation_id: str | None = None,
    user_id: str | None = None,
) -> aio_pika.Message:
    """A persistent JSON message; ``message_id`` is what consumers deduplicate on.

    ``user_id`` must be the publishing connection's user (``Publisher`` fills it in).
    """
    return aio_pika.Message(
        body,
        content_type=JSON,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message_id,
        correlation_id=correlation_id,
        headers=headers or {},
        timestamp=datetime.now(UTC),
        user_id=user_id,
    )


class PublishFailed(Exception):
    """The broker did not confirm a message: unreachable, refused, or no answer in time.

    The message may or may not have been stored; publishing it again is safe because
    every Herald message carries an id its consumers deduplicate on.
    """


class Unroutable(PublishFailed):
    """No queue is bound for the exchange and routing key (or the exchange is missing)."""


class Publisher:
    """Publishes persistent, mandatory messages with publisher confirms.

    One connection and one confirming channel, opened on first use and reopened on the
    next publish after any failure, so a process can start while RabbitMQ is down and
    carry on after it restarts. ``publish`` returns only when the broker confirmed the
    message; anything else raises :class:`PublishFailed`. Every message leaves with
    ``user_id`` set to the connection's user (:attr:`user`).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        declare: bool = False,
        name: str = "herald-publisher",
    ) -> None:
        self._settings = settings
        self._declare = declare
        self._name = name
        self.user = url_user(settings.amqp_url)
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._lock = asyncio.Lock()
        # The client matches a returned (unroutable) message to its publish by message
        # id, so one id never has two publishes in flight at once.
        self._in_flight: dict[str, asyncio.Event] = {}

    async def __aenter__(self) -> Publisher:
        await self._open()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def _open(self) -> AbstractChannel:
        async with self._lock:
            if self._channel is not None and not self._channel.is_closed:
                return self._channel
            await self._drop()
            timeout = self._settings.amqp_publish_timeout_seconds
            try:
                connection = await aio_pika.connect(
                    self._settings.amqp_url,
                    timeout=timeout,
                    client_properties={"connection_name": self._name},
                )
            except (AMQPError, OSError, TimeoutError) as err:
                raise PublishFailed(f"RabbitMQ is unreachable: {_describe(err)}") from err
            self._connection = connection
            try:
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                if self._declare:
                    await declare_topology(channel, self._settings)
            except BaseException:
                await self._drop()
                raise
            self._channel = channel
            return channel

    async def _drop(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        self._exchanges.clear()
        if connection is not None and not connection.is_closed:
            try:
                await connection.close()
            except Exception:  # already broken; nothing more to release
                log.debug("closing a broken AMQP connection failed", exc_info=True)

    async def _exchange(self, name: str) -> AbstractExchange:
        channel = await self._open()
        exchange = self._exchanges.get(name)
        if exchange is None:
            exchange = await channel.get_exchange(name, ensure=False)
            self._exchanges[name] = exchange
        return exchange

    async def publish(self, exchange: str, routing_key: str, message: aio_pika.Message) -> None:
        """Publish and wait for the broker's confirm; raise :class:`PublishFailed` otherwise."""
        # The broker checks it: a message claiming another user is refused.
        message.user_id = self.user
        message_id = message.message_id or ""
        while message_id in self._in_flight:
            await self._in_flight[message_id].wait()
        done = self._in_flight[message_id] = asyncio.Event()
        try:
            await self._confirmed(exchange, routing_key, message)
        finally:
            del self._in_flight[message_id]
            done.set()

    async def _confirmed(self, exchange: str, routing_key: str, message: aio_pika.Message) -> None:
        where = f"exchange {exchange!r} with routing key {routing_key!r}"
        try:
            target = await self._exchange(exchange)
            await target.publish(
                message,
                routing_key,
                mandatory=True,
                timeout=self._settings.amqp_publish_timeout_seconds,
            )
        except PublishError as err:  # basic.return: the broker had nowhere to put it
            raise Unroutable(
                f"unroutable: no queue bound to {where}; run `herald rabbitmq setup`"
            ) from err
        except DeliveryError as err:  # basic.nack
            raise PublishFailed(f"RabbitMQ refused the message for {where}") from err
        except ChannelNotFoundEntity as err:
            await self._drop()
            raise Unroutable(f"unroutable: {_describe(err)}; run `herald rabbitmq setup`") from err
        except PublishFailed:
            raise
        except (AMQPError, ChannelInvalidStateError, OSError, TimeoutError) as err:
            await self._drop()
            raise PublishFailed(f"no confirm for {where}: {_describe(err)}") from err

    async def close(self) -> None:
        """Close the connection (a later publish opens a new one)."""
        async with self._lock:
            await self._drop()


def _describe(err: BaseException) -> str:
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


async def queue_depth(channel: AbstractChannel, name: str) -> tuple[int, int]:
    """``(ready messages, consumers)`` of an existing queue."""
    queue: AbstractQueue = await channel.declare_queue(name, passive=True)
    result = queue.declaration_result
    return int(result.message_count or 0), int(result.consumer_count or 0)
