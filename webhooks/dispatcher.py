"""The webhook dispatcher: delivers what the outbox (``webhook_messages``) still owes.

Every status event is written to the outbox in the same statement as the event itself
(``herald/statuslog/``), so what is owed lives in PostgreSQL and a crash of any process
loses nothing. Dispatchers claim due messages with ``FOR UPDATE SKIP LOCKED`` and a
lease (``HERALD_WEBHOOK_LEASE_SECONDS``): a dispatcher that dies mid-delivery leaves its
messages to be claimed again once the lease runs out, by itself after a restart or by
any other; several can run side by side. Delivery is therefore at least once, and every
retry carries the same ``webhook-id``.

Each endpoint gets at most ``HERALD_WEBHOOK_ENDPOINT_CONCURRENCY`` requests at a time
per dispatcher: each claim takes for an endpoint only what it has room for, so a fast
endpoint's pipeline stays full while a slow or dead one holds up neither the others nor
any notification (the status
write only inserts a row). A failed attempt is retried with backoff
(``herald.webhooks.retry_delay``) until ``HERALD_WEBHOOK_RETRY_HOURS`` (24) have passed
since the event; ``410 Gone`` disables the endpoint.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections import Counter as Tally
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from prometheus_client import Counter, Histogram
from sqlalchemy import Integer, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncEngine

from herald.db import single_statements
from herald.settings import Settings
from herald.webhooks import StatusWebhook, retry_delay
from webhooks.delivery import Answer, post

log = logging.getLogger(__name__)

DELIVERIES = Counter(
    "herald_webhook_deliveries_total",
    "Webhook POSTs by endpoint and outcome (delivered, failed: will retry, gave_up, "
    "disabled: the endpoint answered 410)",
    ["endpoint", "outcome"],
)
DELIVERY_LATENCY = Histogram(
    "herald_webhook_delivery_seconds",
    "Time one webhook POST took, whatever it was answered",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# Due messages: per endpoint that is not disabled, as many as it has room for here (the
# per-endpoint limit less what is in flight to it), so each endpoint's pipeline stays
# full; claimed for the lease so no other dispatcher takes them meanwhile.
_CLAIM = text(
    """
    WITH busy AS (
        SELECT * FROM unnest(CAST(:busy AS uuid[]), CAST(:in_flight AS integer[]))
            AS b(endpoint_id, in_flight)
    ), due AS (
        SELECT picked.id
        FROM webhook_endpoints endpoint
        LEFT JOIN busy ON busy.endpoint_id = endpoint.id
        CROSS JOIN LATERAL (
            SELECT m.id FROM webhook_messages m
            WHERE m.endpoint_id = endpoint.id AND m.state = 'pending'
              AND m.next_attempt_at <= now()
            ORDER BY m.next_attempt_at
            LIMIT GREATEST(:per_endpoint - COALESCE(busy.in_flight, 0), 0)
            FOR UPDATE SKIP LOCKED
        ) picked
        WHERE endpoint.disabled_at IS NULL
        LIMIT :limit
    )
    UPDATE webhook_messages m SET
        attempts = m.attempts + 1,
        next_attempt_at = now() + make_interval(secs => :lease)
    FROM due, notification_events ev, notifications n, webhook_endpoints endpoint
    WHERE m.id = due.id AND ev.id = m.event_id AND n.id = ev.notification_id
      AND endpoint.id = m.endpoint_id
    RETURNING m.id, m.endpoint_id, m.attempts, m.created_at, endpoint.url, endpoint.secret,
              ev.id AS event_id, ev.notification_id, ev.status, ev.attempt, ev.at, ev.detail,
              n.channel
    """
).bindparams(
    bindparam("busy", type_=ARRAY(UUID(as_uuid=True))),
    bindparam("in_flight", type_=ARRAY(Integer)),
)

_RECORD_ATTEMPT = """
    attempt AS (
        INSERT INTO webhook_attempts
            (message_id, endpoint_id, attempt, status_code, error, duration_ms, at)
        VALUES (:id, :endpoint_id, :attempt, :status_code, :error, :duration_ms, now())
    )
"""
_DELIVERED = text(
    f"""WITH {_RECORD_ATTEMPT}
    UPDATE webhook_messages SET state = 'delivered', finished_at = now(), last_error = NULL
    WHERE id = :id"""
)
_RETRY = text(
    f"""WITH {_RECORD_ATTEMPT}
    UPDATE webhook_messages SET
        state = CASE WHEN :give_up THEN 'failed' ELSE 'pending' END,
        finished_at = CASE WHEN :give_up THEN now() END,
        next_attempt_at = now() + make_interval(secs => :delay),
        last_error = :last_error
    WHERE id = :id"""
)
# 410 Gone: the endpoint is disabled and what it was still owed is dropped.
_GONE = text(
    f"""WITH {_RECORD_ATTEMPT},
    disabled AS (
        UPDATE webhook_endpoints SET disabled_at = now(),
            disabled_reason = 'answered 410 Gone to event ' || :webhook_id
        WHERE id = :endpoint_id AND disabled_at IS NULL
    )
    UPDATE webhook_messages SET
        state = CASE WHEN id = :id THEN 'failed' ELSE 'dropped' END,
        finished_at = now(),
        last_error = CASE WHEN id = :id THEN :last_error ELSE 'endpoint disabled' END
    WHERE endpoint_id = :endpoint_id AND (id = :id OR state = 'pending')"""
)


@dataclass(frozen=True)
class Claimed:
    """A message this dispatcher holds the lease of."""

    id: int
    endpoint_id: uuid.UUID
    attempt: int
    created_at: datetime
    url: str
    secret: str
    webhook: StatusWebhook


class Dispatcher:
    """Claims due messages, POSTs them, records each attempt; one per process."""

    def __init__(self, settings: Settings, engine: AsyncEngine, client: httpx.AsyncClient) -> None:
        self._settings = settings
        self._engine = engine
        self._client = client
        self._in_flight: Tally[uuid.UUID] = Tally()
        self._tasks: set[asyncio.Task[None]] = set()
        self._finished = asyncio.Event()

    async def run(self, stop: asyncio.Event, ready: threading.Event | None = None) -> None:
        """Deliver until ``stop`` is set, then let what is in flight finish."""
        settings = self._settings
        failures = 0
        while not stop.is_set():
            free = settings.webhook_concurrency - len(self._tasks)
            claimed: list[Claimed] = []
            if free > 0:
                try:
                    claimed = await self._claim(free)
                    failures = 0
                except Exception as err:
                    failures += 1
                    log.warning("could not claim webhook messages", extra={"error": str(err)})
                    await _wait(stop, min(30.0, settings.webhook_poll_seconds * 2**failures))
                    continue
                if ready is not None:
                    ready.set()
            for message in claimed:
                self._start(message)
            if not claimed or len(self._tasks) >= settings.webhook_concurrency:
                # Until a delivery ends (room for more) or it is time to look again.
                self._finished.clear()
                await _wait(stop, settings.webhook_poll_seconds, self._finished)
        if self._tasks:
            # Requests time out after 10 s; anything still unfinished is claimed again
            # once its lease has run out.
            await asyncio.wait(self._tasks, timeout=12.0)

    def _start(self, message: Claimed) -> None:
        self._in_flight[message.endpoint_id] += 1
        task = asyncio.create_task(self._deliver(message))
        self._tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            self._in_flight[message.endpoint_id] -= 1
            if self._in_flight[message.endpoint_id] <= 0:
                del self._in_flight[message.endpoint_id]
            self._finished.set()

        task.add_done_callback(done)

    async def _claim(self, limit: int) -> list[Claimed]:
        settings = self._settings
        async with single_statements(self._engine) as conn:
            rows = await conn.execute(
                _CLAIM,
                {
                    "limit": limit,
                    "per_endpoint": settings.webhook_endpoint_concurrency,
                    "busy": list(self._in_flight),
                    "in_flight": list(self._in_flight.values()),
                    "lease": settings.webhook_lease_seconds,
                },
            )
            return [
                Claimed(
                    id=row.id,
                    endpoint_id=row.endpoint_id,
                    attempt=row.attempts,
                    created_at=row.created_at,
                    url=row.url,
                    secret=row.secret,
                    webhook=StatusWebhook(
                        event_id=row.event_id,
                        notification_id=row.notification_id,
                        status=row.status,
                        channel=row.channel,
                        attempt=row.attempt,
                        at=row.at,
                        detail=row.detail,
                    ),
                )
                for row in rows
            ]

    async def _deliver(self, message: Claimed) -> None:
        answer = await post(
            self._client,
            message.url,
            message.webhook,
            message.secret,
            allow_private=self._settings.webhooks_allow_private,
        )
        DELIVERY_LATENCY.observe(answer.duration_ms / 1000)
        try:
            outcome = await self._record(message, answer)
        except Exception:
            # Not recorded: the lease runs out and the message is delivered again.
            log.warning(
                "could not record a webhook attempt",
                extra={"webhook_id": message.webhook.webhook_id},
                exc_info=True,
            )
            return
        DELIVERIES.labels(str(message.endpoint_id), outcome).inc()
        if outcome != "delivered":
            log.info(
                "webhook attempt failed",
                extra={
                    "webhook_id": message.webhook.webhook_id,
                    "endpoint": str(message.endpoint_id),
                    "attempt": message.attempt,
                    "status_code": answer.status_code,
                    "error": answer.error,
                    "outcome": outcome,
                },
            )

    async def _record(self, message: Claimed, answer: Answer) -> str:
        params = {
            "id": message.id,
            "endpoint_id": message.endpoint_id,
            "attempt": message.attempt,
            "status_code": answer.status_code,
            "error": answer.error,
            "duration_ms": answer.duration_ms,
        }
        last_error = answer.error or f"HTTP {answer.status_code}"
        # Each outcome is one statement (the attempt and the message's new state together).
        async with single_statements(self._engine) as conn:
            if answer.ok:
                await conn.execute(_DELIVERED, params)
                return "delivered"
            if answer.gone:
                await conn.execute(
                    _GONE,
                    params | {"webhook_id": message.webhook.webhook_id, "last_error": last_error},
                )
                return "disabled"
            window = timedelta(hours=self._settings.webhook_retry_hours)
            now = datetime.now(message.created_at.tzinfo)
            give_up = now - message.created_at >= window
            await conn.execute(
                _RETRY,
                params
                | {
                    "give_up": give_up,
                    "delay": retry_delay(self._settings, message.attempt),
                    "last_error": last_error,
                },
            )
            return "gave_up" if give_up else "failed"


async def _wait(stop: asyncio.Event, seconds: float, *also: asyncio.Event) -> None:
    """Sleep ``seconds``, or less if ``stop`` (or one of ``also``) is set first."""
    waiters = [asyncio.create_task(event.wait()) for event in (stop, *also)]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
