"""``herald dead list`` and ``herald dead replay``: what is in ``herald.dead`` and
``herald.failed``, and sending it again once the cause is fixed.

Listing takes messages without acknowledging them and closes the channel, so every one
of them goes back to its queue. Replaying acknowledges a message only after its replay
is durable:

- from ``herald.dead``: the original body is submitted again through the bridge's
  ingest, for the tenant of the producer that first published it. A message still
  invalid, or whose producer is not (or no longer) mapped, stays where it is with the
  reason. It is not republished: RabbitMQ accepts a ``user_id`` only if it is the
  publishing connection's own user (another one needs the ``impersonator`` tag), so a
  republished copy could carry only the replayer's identity; neither that nor the
  body's ``tenant`` field may decide whose the request is. The producer is the
  message's ``user_id`` when RabbitMQ dead-lettered it (it keeps the original
  properties), and ``x-herald-producer`` when the bridge did (its copy is the bridge's
  publish; the bridge writes that header itself);
- from ``herald.failed``: the notification gets its next send cycle (as ``POST
  /v1/notifications/{id}/resend`` does), but only if it is still ``failed`` in that
  cycle. A copy whose notification has moved on is stale and is dropped, so replaying
  twice never sends twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from bridge.ingest import Ingest, InvalidMessage
from herald import amqp, submission
from herald.contracts import Channel, FailedNotification, Status
from herald.db import make_engine
from herald.intake import Intake
from herald.producers import producer_tenant
from herald.settings import Settings
from herald.temporal import connect

log = logging.getLogger(__name__)

QUEUES = (amqp.DEAD, amqp.FAILED)
_GET_TIMEOUT = 5.0


@dataclass(frozen=True)
class DeadMessage:
    """One message in ``herald.dead`` or ``herald.failed``, as an operator sees it."""

    queue: str
    message_id: str
    notification_id: str | None
    channel: str | None
    reason: str
    at: datetime | None


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def reason_of(message: AbstractIncomingMessage) -> str:
    """``x-herald-error`` if Herald said why, else what the broker's ``x-death`` says."""
    headers = message.headers or {}
    if amqp.ERROR_HEADER in headers:
        return _text(headers[amqp.ERROR_HEADER])
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        death = deaths[0]
        reason = _text(death.get("reason", "dead-lettered"))
        if reason == "delivery_limit":
            reason = "delivery limit reached (the consumer kept failing or crashing on it)"
        return f"{reason} in {_text(death.get('queue', '?'))}"
    return "no reason recorded"


def _body(message: AbstractIncomingMessage) -> dict[str, Any]:
    try:
        body = json.loads(message.body)
    except (ValueError, RecursionError):  # not JSON, or nested past what a reader takes
        return {}
    return body if isinstance(body, dict) else {}


def _channel_of(message: AbstractIncomingMessage, body: dict[str, Any]) -> str | None:
    for candidate in (message.routing_key, body.get("channel")):
        if candidate in {kind.value for kind in Channel}:
            return str(candidate)
    return None


def describe(queue: str, message: AbstractIncomingMessage) -> DeadMessage:
    """The operator's view of one message."""
    body = _body(message)
    notification_id = body.get("id")
    return DeadMessage(
        queue=queue,
        message_id=message.message_id or "",
        notification_id=str(notification_id) if notification_id is not None else None,
        channel=_channel_of(message, body),
        reason=reason_of(message),
        at=message.timestamp,
    )


def matches(entry: DeadMessage, wanted: str) -> bool:
    """Whether ``wanted`` names this message (its notification id or message id)."""
    return wanted in (entry.notification_id, entry.message_id)


@asynccontextmanager
async def _borrowing(settings: Settings) -> AsyncIterator[AbstractChannel]:
    """A channel whose unacknowledged messages all go back to their queues at the end."""
    connection = await aio_pika.connect(settings.amqp_url, timeout=10)
    try:
        channel = await connection.channel()
        await amqp.declare_topology(channel, settings)
        yield channel
    finally:
        await connection.close()


async def _take(
    channel: AbstractChannel, queue_name: str
) -> AsyncIterator[AbstractIncomingMessage]:
    """The messages in the queue now, each once (not those that arrive meanwhile, such
    as a replayed message the bridge dead-letters again)."""
    queue = await channel.get_queue(queue_name)
    for _ in range(queue.declaration_result.message_count or 0):
        message = await queue.get(no_ack=False, fail=False, timeout=_GET_TIMEOUT)
        if message is None:
            return
        yield message


async def list_dead(
    settings: Settings, queues: Sequence[str] = QUEUES, limit: int = 100
) -> list[DeadMessage]:
    """Up to ``limit`` messages per queue, oldest first; the queues are left as they were."""
    found: list[DeadMessage] = []
    async with _borrowing(settings) as channel:
        for queue_name in queues:
            taken = 0
            async for message in _take(channel, queue_name):
                found.append(describe(queue_name, message))
                taken += 1
                if taken >= limit:
                    break
    return found


def producer_of(message: AbstractIncomingMessage) -> str | None:
    """The authenticated AMQP user that published the request a dead message holds."""
    headers = message.headers or {}
    if "x-death" in headers:
        # RabbitMQ dead-lettered it (delivery limit): the original publish's properties,
        # checked by the broker then; its headers are the producer's own.
        return message.user_id or None
    producer = headers.get(amqp.PRODUCER_HEADER)
    return _text(producer) if producer else None


class ReplayResult(StrEnum):
    """What a replay did with one message."""

    resubmitted = "resubmitted"
    resent = "resent"
    stale = "stale"
    kept = "kept"


@dataclass(frozen=True)
class Replayed:
    """One replayed message and what happened to it."""

    entry: DeadMessage
    result: ReplayResult
    detail: str


class Replayer:
    """Replays messages; opens Temporal and PostgreSQL only if a failed one needs them."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._temporal: Client | None = None
        self._engine: AsyncEngine | None = None

    async def close(self) -> None:
        """Release connections."""
        if self._engine is not None:
            await self._engine.dispose()

    async def replay(self, queue: str, message: AbstractIncomingMessage) -> Replayed:
        """Replay one message; the caller acknowledges it unless the result is ``kept``."""
        entry = describe(queue, message)
        if queue == amqp.FAILED:
            return await self._resend(entry, message)
        return await self._resubmit(entry, message)

    async def _resubmit(self, entry: DeadMessage, message: AbstractIncomingMessage) -> Replayed:
        if entry.channel is None:
            return Replayed(entry, ReplayResult.kept, "no channel to route it by; left in place")
        user = producer_of(message)
        if user is None:
            return Replayed(
                entry, ReplayResult.kept, "no authenticated producer recorded; left in place"
            )
        temporal, engine = await self._backends()
        producer = await producer_tenant(engine, user)
        if producer is None:
            return Replayed(
                entry,
                ReplayResult.kept,
                f"AMQP user {user!r} is not mapped to a tenant (herald producer add); "
                "left in place",
            )
        ingest = Ingest(self._settings, temporal, engine)
        try:
            outcome = await ingest.submit(
                message.body,
                Channel(entry.channel),
                producer=producer,
                request_id=message.correlation_id or entry.message_id or None,
            )
        except InvalidMessage as err:
            return Replayed(entry, ReplayResult.kept, f"still invalid: {err}; left in place")
        return Replayed(
            entry, ReplayResult.resubmitted, f"{outcome.value} for tenant {producer.name}"
        )

    async def _backends(self) -> tuple[Client, AsyncEngine]:
        if self._temporal is None:
            self._temporal = await connect(self._settings)
        if self._engine is None:
            self._engine = make_engine(self._settings, pool_size=1)
        return self._temporal, self._engine

    async def _resend(self, entry: DeadMessage, message: AbstractIncomingMessage) -> Replayed:
        try:
            failed = FailedNotification.model_validate_json(message.body)
        except ValidationError:
            return Replayed(entry, ReplayResult.kept, "not a failed notification; left in place")
        temporal, engine = await self._backends()
        row = await submission.find_notification(engine, failed.id)
        if row is None:
            return Replayed(entry, ReplayResult.kept, "no such notification; left in place")
        if row["status"] != Status.failed.value or row["cycle"] != failed.cycle:
            return Replayed(
                entry,
                ReplayResult.stale,
                f"already moved on (now {row['status']}, cycle {row['cycle']}); dropped",
            )
        # The row says whose it is and in which mode it was made, never the message body.
        notification = await Intake(temporal, engine, self._settings).resend(
            row, tenant=failed.tenant
        )
        return Replayed(entry, ReplayResult.resent, f"send cycle {notification.cycle} started")


async def replay_dead(
    settings: Settings,
    *,
    wanted: str | None,
    queues: Sequence[str] = QUEUES,
) -> list[Replayed]:
    """Replay every message (``wanted`` None) or those named ``wanted``; others stay put."""
    done: list[Replayed] = []
    replayer = Replayer(settings)
    try:
        async with _borrowing(settings) as channel:
            for queue_name in queues:
                async for message in _take(channel, queue_name):
                    if wanted is not None and not matches(describe(queue_name, message), wanted):
                        continue
                    outcome = await replayer.replay(queue_name, message)
                    if outcome.result is not ReplayResult.kept:
                        await message.ack()
                    done.append(outcome)
                    log.info(
                        "replayed",
                        extra={
                            "queue": queue_name,
                            "message_id": outcome.entry.message_id,
                            "result": outcome.result.value,
                        },
                    )
    finally:
        await replayer.close()
    return done
