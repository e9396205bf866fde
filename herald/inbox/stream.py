"""The inbox's real-time feed: one PostgreSQL ``LISTEN herald_inbox`` connection per API
process, fanning ``inbox_events`` out to the streams that process serves.

Why LISTEN/NOTIFY and not Redis pub/sub: the event row and its ``pg_notify`` are written in
the transaction that changes the message (``herald.inbox.store``), so a listener never
hears of a change that is not committed, and nothing is announced for a change that rolled
back; and since every API replica listens to the same database, any replica can stream any
user's events, with the table itself as the log a resuming client replays from.

Ordering. ``inbox_events.id`` comes from a sequence, and concurrent transactions can commit
out of id order (id 11 visible while id 10 is still in flight). Handing out 11 and later 10
would let a client resume from 11 and never see 10. So the hub keeps a *horizon*: the
highest id below which every id is either visible or has stayed missing for
``hole_grace_seconds`` (a transaction that rolled back leaves such a hole for good). Only
events up to the horizon are delivered, in id order, so ``Last-Event-ID`` (the last id a
client received) is a gap-free cursor. The horizon is advanced by one query per burst of
notifications for the whole process, not per stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Final

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from herald.inbox.models import NOTIFY_CHANNEL
from herald.pglisten import ChannelListener

log = logging.getLogger(__name__)

# Without notifications (or with the listener down) the log is still read this often.
_POLL_SECONDS: Final = 5.0
# Rows read per query while catching up.
_BATCH: Final = 2000
# A stream this far behind is closed; its client resumes with Last-Event-ID.
MAX_PENDING: Final = 5000


@dataclass(frozen=True)
class InboxEvent:
    """One row of ``inbox_events``."""

    id: int
    tenant: uuid.UUID
    user_id: str
    type: str
    message_id: uuid.UUID


@dataclass(eq=False)
class Subscription:
    """One open stream's queue of events for its user, in id order."""

    tenant: uuid.UUID
    user_id: str
    # The horizon when subscribed: events up to it come from the table, later ones here.
    start: int
    queue: asyncio.Queue[InboxEvent] = field(default_factory=asyncio.Queue)
    overflowed: bool = False


_READ: Final = """
    SELECT id, tenant, user_id, type, message_id FROM inbox_events
    WHERE id > $1 ORDER BY id LIMIT $2
"""
_REPLAY: Final = text(
    """
    SELECT id, tenant, user_id, type, message_id FROM inbox_events
    WHERE tenant = :tenant AND user_id = :user_id AND id > :after AND id <= :until
    ORDER BY id
    """
)


class InboxHub:
    """This process's listener and the streams it feeds; ``start`` once, ``stop`` at exit."""

    def __init__(self, database_url: str, *, hole_grace_seconds: float = 2.0) -> None:
        self._listener = ChannelListener(
            database_url,
            NOTIFY_CHANNEL,
            heard=self._heard,
            session=self._listen_on,
            about="inbox events",
        )
        self._grace = hole_grace_seconds
        self._subscribers: dict[tuple[uuid.UUID, str], set[Subscription]] = defaultdict(set)
        self._wake = asyncio.Event()
        # Ids after the horizon not visible yet, with when each was first missed.
        self._holes: dict[int, float] = {}
        self.horizon = 0
        self.ready = asyncio.Event()

    def start(self) -> None:
        """Listen and deliver in the background until ``stop``."""
        self._listener.start()

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        await self._listener.stop()

    def subscribe(self, tenant: uuid.UUID, user_id: str) -> Subscription:
        """A queue of the user's events after the current horizon."""
        subscription = Subscription(tenant, user_id, self.horizon)
        self._subscribers[tenant, user_id].add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop feeding ``subscription``."""
        key = (subscription.tenant, subscription.user_id)
        subscribers = self._subscribers.get(key)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[key]

    @property
    def streams(self) -> int:
        """How many streams this process feeds."""
        return sum(len(subs) for subs in self._subscribers.values())

    def _heard(self, _payload: str) -> None:
        self._wake.set()

    async def _listen_on(self, conn: asyncpg.Connection) -> None:
        """Deliver events until the connection fails: at once when notified, otherwise
        every few seconds (the log is the truth; a notification only hurries us)."""
        if not self.ready.is_set():
            self.horizon = await conn.fetchval("SELECT coalesce(max(id), 0) FROM inbox_events")
            self.ready.set()
        while True:
            await self._advance(conn)
            # Pending holes are re-checked soon; otherwise a notification wakes us.
            wait = 0.05 if self._holes else _POLL_SECONDS
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            self._wake.clear()

    async def _advance(self, conn: asyncpg.Connection) -> None:
        """Deliver every visible event after the horizon that no in-flight id precedes."""
        while True:
            rows = await conn.fetch(_READ, self.horizon, _BATCH)
            now = time.monotonic()
            expected = self.horizon + 1
            for row in rows:
                event = _event(row)
                while expected < event.id:  # a hole: wait for it, up to the grace
                    first_missed = self._holes.setdefault(expected, now)
                    if now - first_missed < self._grace:
                        return
                    del self._holes[expected]
                    log.warning("inbox event %d never committed; skipped", expected)
                    expected += 1
                self._holes.pop(event.id, None)
                self._deliver(event)
                self.horizon = expected = event.id
                expected += 1
            if len(rows) < _BATCH:
                return

    def _deliver(self, event: InboxEvent) -> None:
        for subscription in self._subscribers.get((event.tenant, event.user_id), ()):
            if subscription.overflowed:
                continue
            if subscription.queue.qsize() >= MAX_PENDING:
                subscription.overflowed = True
            subscription.queue.put_nowait(event)


async def replay(
    conn: AsyncConnection, tenant: uuid.UUID, user_id: str, after: int, until: int
) -> list[InboxEvent]:
    """The user's events with ``after < id <= until``, read from the table."""
    params = {"tenant": tenant, "user_id": user_id, "after": after, "until": until}
    rows = await conn.execute(_REPLAY, params)
    return [InboxEvent(row.id, row.tenant, row.user_id, row.type, row.message_id) for row in rows]


def _event(row: asyncpg.Record) -> InboxEvent:
    return InboxEvent(row["id"], row["tenant"], row["user_id"], row["type"], row["message_id"])
