"""The plain-queue consumer: sends each queued email over SMTP, marks it ``sent``, acks.

    python -m benchmarks.peer.consumer CONFIG_JSON

Manual acks with a bounded prefetch: a message is acked only after its row says ``sent``
(or after a failed send was republished for its next attempt, or marked ``failed`` after
the last), so a crash at any point leaves it unacked and RabbitMQ delivers it again.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid
from email.message import EmailMessage
from typing import Any

import aio_pika
import aiosmtplib
import asyncpg
import uvloop
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage

from benchmarks.peer.config import MAX_ATTEMPTS, PeerConfig
from herald.runtime import tune_gc

SENDER = "Peer <peer@localhost>"


class SmtpPool:
    """Up to ``size`` kept-open connections to one SMTP server."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host = host
        self.port = port
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(size)

    async def send(self, message: EmailMessage) -> None:
        """Send on an idle connection (or a new one); a connection that failed is closed."""
        async with self._slots:
            if self._idle:
                client = self._idle.pop()
            else:
                client = aiosmtplib.SMTP(hostname=self.host, port=self.port, timeout=10)
                await client.connect()
            try:
                await client.send_message(message)
            except BaseException:
                client.close()
                raise
            self._idle.append(client)


def build_message(email: dict[str, Any]) -> EmailMessage:
    """The email, with the message id as its ``Message-ID`` (the receiver's dedupe key)."""
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = email["to"]
    message["Subject"] = email["subject"]
    message["Message-ID"] = f"<{email['id']}@peer.localhost>"
    message.set_content(email["html"], subtype="html")
    return message


class Consumer:
    """Handles one delivery at a time per task; RabbitMQ's prefetch bounds the tasks."""

    def __init__(self, config: PeerConfig, db: asyncpg.Pool, exchange: AbstractExchange):
        self.config = config
        self.db = db
        self.exchange = exchange
        self.smtp = SmtpPool(config.smtp_host, config.smtp_port, config.smtp_pool_size)

    async def handle(self, message: AbstractIncomingMessage) -> None:
        """Send, record, ack; on a failed send, republish or give up, then ack."""
        # An exception escaping here (the database is down) requeues the message.
        async with message.process(requeue=True):
            email = json.loads(message.body)
            email_id = uuid.UUID(email["id"])
            attempt = int(str((message.headers or {}).get("x-attempt", 1)))
            try:
                await self.smtp.send(build_message(email))
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as err:
                await self.failed(message, email_id, attempt, f"{type(err).__name__}: {err}")
                return
            await self.db.execute(
                "UPDATE emails SET status = 'sent', attempts = $2, updated_at = now() "
                "WHERE id = $1",
                email_id,
                attempt,
            )

    async def failed(
        self, message: AbstractIncomingMessage, email_id: uuid.UUID, attempt: int, error: str
    ) -> None:
        """Mark the email ``failed``, or ``retrying`` and queue its next attempt (after a
        short backoff). The row is written first: once the next attempt is queued, it may
        mark the row ``sent`` at any moment."""
        final = attempt >= MAX_ATTEMPTS
        await self.db.execute(
            "UPDATE emails SET status = $2, attempts = $3, last_error = $4, updated_at = now() "
            "WHERE id = $1",
            email_id,
            "failed" if final else "retrying",
            attempt,
            error,
        )
        if not final:
            await asyncio.sleep(0.5 * 2 ** (attempt - 1))
            await self.exchange.publish(
                aio_pika.Message(
                    message.body,
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=message.message_id,
                    headers={"x-attempt": attempt + 1},
                ),
                routing_key=self.config.queue,
                mandatory=True,
            )


async def consume(config: PeerConfig) -> None:
    """Consume until SIGTERM."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    size = config.database_pool_size
    db = await asyncpg.create_pool(config.database_dsn, min_size=size, max_size=size)
    connection = await aio_pika.connect_robust(config.amqp_url)
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    await channel.set_qos(prefetch_count=config.prefetch)
    queue = await channel.declare_queue(config.queue, durable=True)
    consumer = Consumer(config, db, channel.default_exchange)
    tune_gc()
    tag = await queue.consume(consumer.handle)
    await stop.wait()
    await queue.cancel(tag)
    await connection.close()
    await db.close()


if __name__ == "__main__":
    uvloop.run(consume(PeerConfig.parse(sys.argv[1])))
