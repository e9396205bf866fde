"""Publishing notification requests to Herald from another service.

    from herald.contracts import QueuedNotification
    from herald.producer import NotificationProducer

    # The URL ``herald producer add --tenant acme`` printed: acme's own AMQP user.
    async with NotificationProducer("amqp://acme-producer:…@rabbitmq:5672/") as producer:
        await producer.publish(
            QueuedNotification(
                id=uuid.uuid4(), channel="email",
                user_id="u-42", template="welcome", data={"name": "Ada"},
            )
        )

Messages are persistent and mandatory and each publish waits for the broker's confirm:
``publish`` returning means RabbitMQ has the message; an unroutable or refused message,
or no confirm in time, raises :class:`herald.amqp.PublishFailed`. Publishing the same
notification again (same ``id``) after an error is safe: Herald starts it once.

Every message carries ``user_id``, the connection's AMQP user, which RabbitMQ verifies:
it is how the bridge knows the tenant. A ``tenant`` in the request is optional; one that
is not the producer's tenant gets the message dead-lettered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from herald import amqp
from herald.contracts import QueuedNotification
from herald.settings import Settings


def ingest_message(notification: QueuedNotification) -> tuple[str, str, bytes]:
    """``(exchange, routing key, body)`` of one notification request."""
    body = notification.model_dump_json(exclude_none=True).encode()
    return amqp.REQUESTS_EXCHANGE, notification.channel.value, body


class NotificationProducer:
    """Publishes :class:`QueuedNotification` requests to ``herald.requests`` as the AMQP
    user of ``amqp_url`` (its ``user_id``)."""

    def __init__(self, amqp_url: str | None = None, *, settings: Settings | None = None) -> None:
        settings = settings or Settings()
        if amqp_url is not None:
            settings = settings.model_copy(update={"amqp_url": amqp_url})
        self._publisher = amqp.Publisher(settings, name="herald-producer")

    async def __aenter__(self) -> NotificationProducer:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def publish(
        self, notification: QueuedNotification, *, correlation_id: str | None = None
    ) -> None:
        """Publish one request and wait until RabbitMQ confirmed it."""
        exchange, routing_key, body = ingest_message(notification)
        message = amqp.json_message(
            body,
            message_id=str(notification.id),
            correlation_id=correlation_id,
            user_id=self._publisher.user,
        )
        await self._publisher.publish(exchange, routing_key, message)

    async def publish_many(
        self,
        notifications: Iterable[QueuedNotification],
        *,
        in_flight: int = 100,
        on_published: Callable[[QueuedNotification], None] | None = None,
    ) -> int:
        """Publish with up to ``in_flight`` confirms outstanding; stop at the first error.

        Returns how many were published (and confirmed).
        """
        slots = asyncio.Semaphore(in_flight)
        published = 0

        async def one(notification: QueuedNotification) -> None:
            nonlocal published
            try:
                await self.publish(notification)
            finally:
                slots.release()
            published += 1
            if on_published is not None:
                on_published(notification)

        try:
            async with asyncio.TaskGroup() as group:
                for notification in notifications:
                    await slots.acquire()
                    group.create_task(one(notification))
        except ExceptionGroup as errors:
            raise _first(errors) from None
        return published

    async def close(self) -> None:
        """Close the connection."""
        await self._publisher.close()


def _first(errors: BaseExceptionGroup[BaseException]) -> BaseException:
    error = errors.exceptions[0]
    return _first(error) if isinstance(error, BaseExceptionGroup) else error
