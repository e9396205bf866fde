"""What the console's overview shows, computed from the status log in PostgreSQL: per
channel, the notifications that ended sent, delivered, failed or suppressed over the last
hour (5-minute buckets) and day (hourly buckets); delivery success over the day against
the target; accept→sent latency; the most common failure reasons.

A notification is counted once, by the status it ended in and when it got there
(``notifications.status`` and ``updated_at``, which every status write moves), so the
bars of a bucket add up to the notifications that finished in it. Every query reads
one tenant's rows through ``migrations/versions/0012_overview_indexes.py``'s indexes;
``benchmarks/overview.py`` times them at 1,000,000 notifications.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Float,
    Interval,
    Select,
    and_,
    cast,
    func,
    literal,
    select,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by, array
from sqlalchemy.ext.asyncio import AsyncEngine

from api.services.notifications import visible_to
from herald.contracts import Channel
from herald.db import Notification, NotificationEvent
from herald.tenants import TenantContext

# The share of finished notifications that should reach their recipient.
SUCCESS_TARGET = 0.995
# How many failure reasons the overview lists, and how much of each it groups by.
TOP_FAILURES = 5
REASON_CHARS = 200

# The series of the charts, and the statuses each counts. ``undelivered`` (accepted by
# the provider, then bounced) is a failure to the reader of a chart.
OUTCOMES: dict[str, tuple[str, ...]] = {
    "delivered": ("delivered",),
    "sent": ("sent",),
    "failed": ("failed", "undelivered"),
    "suppressed": ("suppressed",),
}
_COUNTED = tuple(status for statuses in OUTCOMES.values() for status in statuses)
_FAILED = ("failed", "undelivered")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# For the transaction of each query: these aggregates' estimated cost passes the JIT
# threshold, though compiling costs more than running them; the latency percentiles
# sort a day of sends, in memory rather than on disk; and the indexes they read are in
# memory, so an index range costs about what a sequential read does (PostgreSQL's
# default of 4 makes a day of a busy tenant look cheaper to read as the whole table).
QUERY_SETTINGS = {"jit": "off", "work_mem": "32MB", "random_page_cost": "1.1"}


@dataclass(frozen=True)
class Window:
    """A span of time ending now, cut into equal buckets (the last one still filling)."""

    name: str
    bucket: timedelta
    buckets: int

    def start(self, now: datetime) -> datetime:
        """The first bucket's start: buckets are aligned to the clock (10:05, 10:10...)."""
        width = self.bucket.total_seconds()
        current = _EPOCH + timedelta(seconds=(now - _EPOCH).total_seconds() // width * width)
        return current - self.bucket * (self.buckets - 1)


HOUR = Window("hour", timedelta(minutes=5), 12)
DAY = Window("day", timedelta(hours=1), 24)


@dataclass
class Bucket:
    """The notifications of one channel that ended in one bucket, by outcome."""

    start: datetime
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))

    @property
    def total(self) -> int:
        """All outcomes together (the height of a stacked bar)."""
        return sum(self.counts.values())


@dataclass
class ChannelSeries:
    """One channel's buckets over one window."""

    channel: str
    buckets: list[Bucket]

    @property
    def totals(self) -> dict[str, int]:
        """Each outcome over the whole window."""
        return {
            outcome: sum(bucket.counts[outcome] for bucket in self.buckets) for outcome in OUTCOMES
        }

    @property
    def peak(self) -> int:
        """The tallest bucket (the chart's scale)."""
        return max((bucket.total for bucket in self.buckets), default=0)


@dataclass(frozen=True)
class Success:
    """Delivery success over a window: sent or delivered, of those that were sent or
    failed (suppressed and cancelled ones were never meant to go out)."""

    succeeded: int
    finished: int
    target: float = SUCCESS_TARGET

    @property
    def rate(self) -> float | None:
        """None when nothing finished."""
        return self.succeeded / self.finished if self.finished else None

    @property
    def met(self) -> bool | None:
        """Whether the rate reaches the target; None when nothing finished."""
        return None if self.rate is None else self.rate >= self.target


@dataclass(frozen=True)
class Latency:
    """Accept→sent seconds of one channel's notifications sent in the last hour and day."""

    channel: str
    hour_p50: float | None
    hour_p95: float | None
    day_p50: float | None
    day_p95: float | None
    day_count: int


@dataclass(frozen=True)
class FailureReason:
    """One error text (its first ``REASON_CHARS``) and the notifications that ended with it."""

    reason: str
    count: int
    channels: list[str]
    latest_id: uuid.UUID
    latest_at: datetime


@dataclass
class Overview:
    """Everything the overview's numbers and charts come from."""

    now: datetime
    hour: list[ChannelSeries]
    day: list[ChannelSeries]
    success: Success
    success_by_channel: dict[str, Success]
    latency: list[Latency]
    failures: list[FailureReason]


def _mine(tenant: TenantContext, since: datetime) -> ColumnElement[bool]:
    """The tenant's notifications (a test key: its test ones) whose status moved since
    ``since``: the leading columns of ``ix_notifications_tenant_updated``."""
    return and_(visible_to(tenant), Notification.updated_at >= since)


def outcome_counts_query(tenant: TenantContext, window: Window, now: datetime) -> Select[Any]:
    """Per channel, status and bucket, how many notifications ended there."""
    bucket = func.date_bin(
        literal(window.bucket, Interval()),
        Notification.updated_at,
        literal(_EPOCH, DateTime(timezone=True)),
    ).label("bucket")
    return (
        select(Notification.channel, Notification.status, bucket, func.count().label("n"))
        .where(_mine(tenant, window.start(now)), Notification.status.in_(_COUNTED))
        .group_by(Notification.channel, Notification.status, bucket)
    )


def latency_query(tenant: TenantContext, now: datetime) -> Select[Any]:
    """Per channel, p50 and p95 of the seconds from acceptance (or the scheduled time) to
    the first ``sent`` of the first send cycle, for those sent in the last hour and day.

    Both sides are ranges over an index (the tenant's notifications that moved in the
    day; the ``sent`` events of the day), joined by hash: a notification sent in the
    window has moved in it too.
    """
    day_since, hour_since = DAY.start(now), HOUR.start(now)
    started = func.greatest(
        Notification.created_at, func.coalesce(Notification.send_at, Notification.created_at)
    )
    sends = (
        select(
            Notification.channel.label("channel"),
            (NotificationEvent.at >= hour_since).label("in_hour"),
            cast(func.extract("epoch", NotificationEvent.at - started), Float).label("seconds"),
        )
        .select_from(NotificationEvent)
        .join(Notification, Notification.id == NotificationEvent.notification_id)
        .where(
            NotificationEvent.status == "sent",
            NotificationEvent.at >= day_since,
            NotificationEvent.cycle == 1,
            _mine(tenant, day_since),
        )
        # OFFSET 0 keeps this a subquery of its own, so each send's seconds are worked
        # out once rather than once per aggregate below.
        .offset(0)
        .subquery("sends")
    )
    # One sort per channel and window gives both percentiles; a FILTER per channel rather
    # than GROUP BY spares sorting the whole day by channel first.
    percentiles = func.percentile_cont(array([literal(0.5), literal(0.95)])).within_group(
        sends.c.seconds
    )
    columns = []
    for channel in Channel:
        mine = sends.c.channel == channel.value
        columns += [
            percentiles.filter(mine, sends.c.in_hour).label(f"{channel.value}_hour"),
            percentiles.filter(mine).label(f"{channel.value}_day"),
            func.count().filter(mine).label(f"{channel.value}_count"),
        ]
    return select(*columns).select_from(sends)


def failures_query(tenant: TenantContext, now: datetime, limit: int = TOP_FAILURES) -> Select[Any]:
    """The most common error texts of the day's failed and undelivered notifications,
    each with its latest notification (``ix_notifications_tenant_failed``)."""
    reason = func.left(func.coalesce(Notification.last_error, ""), REASON_CHARS).label("reason")
    count = func.count().label("n")
    return (
        select(
            reason,
            count,
            func.array_agg(Notification.channel.distinct()).label("channels"),
            func.max(Notification.updated_at).label("latest_at"),
            # The newest failing notification with this reason, for a link to it.
            func.array_agg(aggregate_order_by(Notification.id, Notification.updated_at.desc()))[
                1
            ].label("latest_id"),
        )
        .where(_mine(tenant, DAY.start(now)), Notification.status.in_(_FAILED))
        .group_by(reason)
        .order_by(count.desc(), reason)
        .limit(limit)
    )


async def _rows(engine: AsyncEngine, query: Select[Any]) -> Sequence[Any]:
    async with engine.connect() as conn:
        for name, value in QUERY_SETTINGS.items():
            await conn.execute(select(func.set_config(name, value, True)))  # SET LOCAL
        rows: Sequence[Any] = (await conn.execute(query)).all()
        return rows


async def outcome_counts(
    engine: AsyncEngine, tenant: TenantContext, window: Window, now: datetime
) -> list[ChannelSeries]:
    """Every channel's buckets over ``window`` (empty buckets included)."""
    start = window.start(now)
    series = {
        channel.value: ChannelSeries(
            channel.value, [Bucket(start + window.bucket * i) for i in range(window.buckets)]
        )
        for channel in Channel
    }
    for channel, status, bucket, n in await _rows(
        engine, outcome_counts_query(tenant, window, now)
    ):
        index = int((bucket - start) / window.bucket)
        if channel not in series or not 0 <= index < window.buckets:
            continue
        outcome = next(name for name, statuses in OUTCOMES.items() if status in statuses)
        series[channel].buckets[index].counts[outcome] += n
    return list(series.values())


def success_of(series: Sequence[ChannelSeries]) -> Success:
    """Delivery success over the buckets of ``series``."""
    succeeded = sum(s.totals["sent"] + s.totals["delivered"] for s in series)
    return Success(succeeded, succeeded + sum(s.totals["failed"] for s in series))


async def latency(engine: AsyncEngine, tenant: TenantContext, now: datetime) -> list[Latency]:
    """Accept→sent percentiles of every channel (None where nothing was sent)."""
    row = (await _rows(engine, latency_query(tenant, now)))[0]._mapping

    def pair(values: list[float] | None) -> tuple[float | None, float | None]:
        return (values[0], values[1]) if values else (None, None)

    results = []
    for channel in Channel:
        hour_p50, hour_p95 = pair(row[f"{channel.value}_hour"])
        day_p50, day_p95 = pair(row[f"{channel.value}_day"])
        count = row[f"{channel.value}_count"]
        results.append(Latency(channel.value, hour_p50, hour_p95, day_p50, day_p95, count))
    return results


async def top_failures(
    engine: AsyncEngine, tenant: TenantContext, now: datetime, limit: int = TOP_FAILURES
) -> list[FailureReason]:
    """The day's most common failure reasons, most frequent first."""
    return [
        FailureReason(row.reason, row.n, sorted(row.channels), row.latest_id, row.latest_at)
        for row in await _rows(engine, failures_query(tenant, now, limit))
    ]


async def overview(
    engine: AsyncEngine, tenant: TenantContext, now: datetime | None = None
) -> Overview:
    """The overview of ``tenant`` at ``now`` (default: this moment); the queries run
    side by side, each on a connection of its own."""
    now = now or datetime.now(UTC)
    hour, day, latencies, failures = await asyncio.gather(
        outcome_counts(engine, tenant, HOUR, now),
        outcome_counts(engine, tenant, DAY, now),
        latency(engine, tenant, now),
        top_failures(engine, tenant, now),
    )
    return Overview(
        now=now,
        hour=hour,
        day=day,
        success=success_of(day),
        success_by_channel={series.channel: success_of([series]) for series in day},
        latency=latencies,
        failures=failures,
    )
