"""What a bridge knows about its ingest queues that the broker cannot say: which messages
it holds unsettled while it waits out an outage (or has requeued after an error), why,
since when, and since when a queue has had messages ready without one being settled.

A passive declare gives a queue's ready count and consumers, never the age of its oldest
message; a bridge that holds its prefetch while Temporal is down leaves every service
"ok" and the queue silently full. So each bridge writes what it knows to
``ingest_queue_reports`` every ``HERALD_BACKLOG_SAMPLE_SECONDS`` (with the time, so the row
of a bridge that died goes stale) and sets ``herald_ingest_held_messages`` and
``herald_ingest_oldest_message_seconds``. The health page, ``/readyz`` and ``herald
doctor`` read the rows (``api/services/health.py``).

The oldest waiting age is a lower bound the bridge can stand behind: a held message's
publish time (its ``timestamp`` property, or when the bridge took it), and, for a queue
that had messages ready at a sample and has settled none since, the time of that sample.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aio_pika.exceptions import AMQPError, ChannelInvalidStateError
from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.service import RPCError

from herald import amqp
from herald.db import IngestQueueReport
from herald.metrics import INGEST_HELD, INGEST_OLDEST

log = logging.getLogger(__name__)

REASON_LIMIT = 500
# A requeued message that has not come back to this bridge for this long was taken by
# another one (or dead-lettered by the broker): it is no longer this bridge's to count.
REQUEUE_FORGET_SECONDS = 300.0
# Rows of bridges that stopped reporting this long ago are deleted by the others.
FORGET_BRIDGES_SECONDS = 86_400.0


def bridge_name(instance: str) -> str:
    """How a bridge names itself in its reports: host (the pod, on Kubernetes) and a
    per-process id."""
    return f"{socket.gethostname()[:100]}-{instance}"


def describe_outage(err: BaseException) -> str:
    """Which service a transient error says is unavailable, and the error's first line.

    The health page shows it to every tenant's operators, so it never carries a
    statement's parameters (SQLAlchemy's text of an error lists them): only the
    driver's own error.
    """
    if isinstance(err, RPCError):
        service = "Temporal"
    elif isinstance(err, SQLAlchemyError) or type(err).__module__.startswith("asyncpg"):
        service = "PostgreSQL"
    elif isinstance(err, AMQPError | ChannelInvalidStateError | amqp.PublishFailed):
        service = "RabbitMQ"
    else:
        service = "a service"
    if isinstance(err, DBAPIError) and err.orig is not None:
        err = err.orig
    first_line = (str(err).strip().splitlines() or [""])[0]
    return clean_reason(f"{service} unavailable: {type(err).__name__}: {first_line}")


def requeue_reason(err: BaseException) -> str:
    """Why a message was requeued, without the error's text (which may quote the
    message); the bridge's log has it all."""
    return f"requeued after an unexpected error ({type(err).__name__}); see the bridge's log"


def clean_reason(text: str) -> str:
    """A reason fit for a text column and a table cell: no NUL, bounded."""
    return text.replace("\x00", "\\x00")[:REASON_LIMIT]


@dataclass
class _Held:
    since: float
    reason: str
    seen: float


@dataclass
class _Queue:
    held: dict[int, _Held] = field(default_factory=dict)
    requeued: dict[str, _Held] = field(default_factory=dict)
    reason: str | None = None
    reason_at: float | None = None
    ready: int | None = None
    stalled_since: float | None = None


@dataclass(frozen=True)
class QueueReport:
    """One queue as this bridge sees it now (wall-clock seconds)."""

    queue: str
    held: int
    oldest_held_since: float | None
    last_reason: str | None
    last_reason_at: float | None
    ready: int | None
    stalled_since: float | None

    def oldest_age(self, now: float) -> float:
        """Seconds the oldest message this bridge knows waits has waited (0: none)."""
        starts = [t for t in (self.oldest_held_since, self.stalled_since) if t is not None]
        return max(0.0, now - min(starts)) if starts else 0.0


class IngestHealth:
    """Per ingest queue: held messages, the last reason given, and whether it drains.

    Called from the consumer's tasks and the sampler, all on one event loop.
    """

    def __init__(self, queues: Iterable[str], clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._queues = {name: _Queue() for name in queues}

    @property
    def queues(self) -> list[str]:
        """The queues tracked."""
        return list(self._queues)

    def hold(self, queue: str, key: int, reason: str, published: float | None) -> None:
        """The message ``key`` (taken from ``queue``) waits for a service, for ``reason``."""
        now = self._clock()
        state = self._queues[queue]
        state.reason, state.reason_at = reason, now
        held = state.held.get(key)
        if held is None:
            # A producer's clock ahead of ours is not trusted further than now.
            since = min(published, now) if published else now
            state.held[key] = _Held(since, reason, now)
        else:
            held.reason, held.seen = reason, now

    def release(self, queue: str, key: int) -> None:
        """The message ``key`` is no longer held in this process (settled or given back)."""
        self._queues[queue].held.pop(key, None)

    def requeued(self, queue: str, message_id: str, reason: str, published: float | None) -> None:
        """The message went back to its queue after an unexpected error."""
        now = self._clock()
        state = self._queues[queue]
        state.reason, state.reason_at = reason, now
        known = state.requeued.get(message_id)
        since = known.since if known else (min(published, now) if published else now)
        state.requeued[message_id] = _Held(since, reason, now)

    def settled(self, queue: str, message_id: str | None) -> None:
        """A message of ``queue`` was acknowledged (started, duplicate or dead-lettered):
        the queue drains."""
        state = self._queues[queue]
        if message_id is not None:
            state.requeued.pop(message_id, None)
        state.stalled_since = None

    def sampled(self, queue: str, ready: int) -> None:
        """The broker says ``queue`` has ``ready`` messages no consumer has taken."""
        state = self._queues[queue]
        state.ready = ready
        if ready == 0:
            state.stalled_since = None
        elif state.stalled_since is None:
            state.stalled_since = self._clock()

    def report(self, queue: str) -> QueueReport:
        """What to publish about ``queue`` now."""
        now = self._clock()
        state = self._queues[queue]
        for message_id, entry in list(state.requeued.items()):
            if now - entry.seen > REQUEUE_FORGET_SECONDS:
                del state.requeued[message_id]
        held = [*state.held.values(), *state.requeued.values()]
        return QueueReport(
            queue=queue,
            held=len(held),
            oldest_held_since=min((entry.since for entry in held), default=None),
            last_reason=state.reason,
            last_reason_at=state.reason_at,
            ready=state.ready,
            stalled_since=state.stalled_since,
        )


def _when(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


class QueueHealthReporter:
    """Writes one bridge's reports to PostgreSQL and its gauges to ``/metrics``."""

    def __init__(
        self, engine: AsyncEngine, health: IngestHealth, bridge: str, every: float
    ) -> None:
        self._engine = engine
        self._health = health
        self.bridge = bridge
        self._every = every
        for queue in health.queues:
            INGEST_HELD.labels(queue).set(0)
            INGEST_OLDEST.labels(queue).set(0)

    async def publish(self) -> None:
        """Set the gauges and rewrite this bridge's rows (an outage skips the rows)."""
        now = time.time()
        reports = [self._health.report(queue) for queue in self._health.queues]
        for report in reports:
            INGEST_HELD.labels(report.queue).set(report.held)
            INGEST_OLDEST.labels(report.queue).set(round(report.oldest_age(now), 1))
        rows = [
            {
                "bridge": self.bridge,
                "queue": report.queue,
                "held": report.held,
                "oldest_held_since": _when(report.oldest_held_since),
                "last_reason": report.last_reason,
                "last_reason_at": _when(report.last_reason_at),
                "ready": report.ready,
                "stalled_since": _when(report.stalled_since),
                "report_seconds": self._every,
                "reported_at": _when(now),
            }
            for report in reports
        ]
        statement = insert(IngestQueueReport).values(rows)
        upsert = statement.on_conflict_do_update(
            index_elements=[IngestQueueReport.bridge, IngestQueueReport.queue],
            set_={
                name: statement.excluded[name]
                for name in rows[0]
                if name not in {"bridge", "queue"}
            },
        )
        forgotten = _when(now - FORGET_BRIDGES_SECONDS)
        async with self._engine.begin() as conn:
            await conn.execute(upsert)
            await conn.execute(
                delete(IngestQueueReport).where(IngestQueueReport.reported_at < forgotten)
            )

    async def withdraw(self) -> None:
        """Delete this bridge's rows: it stops, and what it held returns to the queues."""
        async with self._engine.begin() as conn:
            await conn.execute(
                delete(IngestQueueReport).where(IngestQueueReport.bridge == self.bridge)
            )
