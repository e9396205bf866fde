"""How many notifications are retrying, and for how long the oldest of them has been,
per channel: the gauges behind the "retrying for more than 15 minutes" alert
(``deploy/prometheus/alerts.yml``).

The API samples them from PostgreSQL every ``HERALD_BACKLOG_SAMPLE_SECONDS``; each
replica reports the same values, so alert on the max per channel. The gauges live here
and not in ``herald.metrics`` so that the API exports these two and none of the
workers' metrics.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from prometheus_client import Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from herald.contracts import Channel
from herald.db import single_statements

log = logging.getLogger(__name__)

RETRYING = Gauge(
    "herald_notifications_retrying",
    "Notifications whose provider send is being retried right now",
    ["channel"],
)
RETRYING_OLDEST = Gauge(
    "herald_notifications_retrying_oldest_seconds",
    "How long the longest-retrying notification has been retrying in its current send "
    "cycle (0 when none is)",
    ["channel"],
)

# Per tenant, so that the (tenant_id, status, created_at) index finds the retrying rows
# without reading the table; "since" is the first ``retrying`` event of the current
# cycle, as every later attempt moves ``updated_at`` on.
_RETRYING = text(
    """
    SELECT n.channel, count(*) AS retrying,
           EXTRACT(EPOCH FROM now() - min(COALESCE(since.at, n.updated_at))) AS oldest
    FROM tenants t
    CROSS JOIN LATERAL (
        SELECT id, channel, cycle, updated_at FROM notifications
        WHERE tenant_id = t.id AND status = 'retrying'
    ) n
    CROSS JOIN LATERAL (
        SELECT min(e.at) AS at FROM notification_events e
        WHERE e.notification_id = n.id AND e.cycle = n.cycle AND e.status = 'retrying'
    ) since
    GROUP BY n.channel
    """
)
_CHANNELS = {channel.value for channel in Channel}


@dataclass(frozen=True)
class Retrying:
    """The notifications of one channel that are retrying."""

    count: int
    oldest_seconds: float


async def retrying(engine: AsyncEngine) -> dict[Channel, Retrying]:
    """Every channel's retrying notifications (none: count 0, age 0)."""
    found = {channel: Retrying(0, 0.0) for channel in Channel}
    async with single_statements(engine) as conn:
        for row in await conn.execute(_RETRYING):
            if row.channel in _CHANNELS:
                found[Channel(row.channel)] = Retrying(int(row.retrying), max(0.0, row.oldest))
    return found


def publish(samples: dict[Channel, Retrying]) -> None:
    """Set the gauges from one sample."""
    for channel, sample in samples.items():
        RETRYING.labels(channel.value).set(sample.count)
        RETRYING_OLDEST.labels(channel.value).set(sample.oldest_seconds)


async def sample_forever(engine: AsyncEngine, interval: float) -> None:
    """Sample every ``interval`` seconds until cancelled; a failed sample keeps the last
    values (PostgreSQL being down is an alert of its own) and is retried next round."""
    while True:
        try:
            publish(await asyncio.wait_for(retrying(engine), timeout=max(interval, 5.0)))
        except Exception as err:
            log.warning("retrying notifications not sampled", extra={"error": str(err)})
        await asyncio.sleep(interval)
