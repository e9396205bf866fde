"""How fast the RabbitMQ bridge drains queued requests into workflow starts, next to how
fast the workers complete them: same run, same Temporal dev server, same machine.

    .venv/bin/python -m benchmarks.bridge_drain [--count 10000] [--prefetch 50]

The requests (emails) are queued first, with the bridge stopped and the API and workers
running. Then the bridge starts. Both clocks start when its consumers are attached:
*drain* stops when the last request has been started (its notification accepted, the
queue empty), *complete* when the last notification is ``sent``. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from benchmarks.environment import local_herald
from devtools.processes import wait_http
from devtools.sinks import Sinks
from herald import amqp
from herald.contracts import Channel, QueuedNotification
from herald.db import Notification, make_engine
from herald.producer import NotificationProducer
from herald.settings import Settings
from herald.tenants import create_api_key
from tests.bridge.support import vhost, wait_consumers
from tests.harness import Stack, Tenant, producer_settings, rabbitmq_vhost

_POLL = 0.2


async def _count(engine: AsyncEngine, status: str | None = None) -> int:
    query = select(func.count()).select_from(Notification)
    if status is not None:
        query = query.where(Notification.status == status)
    async with engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def _until(engine: AsyncEngine, count: int, status: str | None, started: float) -> float:
    """Seconds from ``started`` until ``count`` notifications (with ``status``) exist."""
    while await _count(engine, status) < count:
        await asyncio.sleep(_POLL)
    return time.perf_counter() - started


async def measure(stack: Stack, count: int, sinks: Sinks) -> dict[str, float]:
    """Queue ``count`` requests, start the bridge, time the drain and the completion."""
    settings = stack.settings
    engine = make_engine(settings, pool_size=2)
    name = f"bench-{uuid.uuid4().hex[:6]}"
    key = await create_api_key(engine, name)
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as api:
        tenant = Tenant(api, name)
        user = await tenant.user()
        template = await tenant.template("email", "<p>Order {{ n }} shipped</p>", "Order {{ n }}")

    await amqp.setup(settings)
    batch = [
        QueuedNotification(
            id=uuid.uuid4(),
            tenant=name,
            channel=Channel.email,
            user_id=user["id"],
            template=template,
            data={"n": i},
        )
        for i in range(count)
    ]
    published = time.perf_counter()
    as_producer = await producer_settings(settings, name)
    async with NotificationProducer(settings=as_producer) as producer:
        await producer.publish_many(batch)
    publish_seconds = time.perf_counter() - published

    stack.processes["bridge"].start()
    await wait_consumers(settings, timeout=120)
    started = time.perf_counter()
    drain, complete = await asyncio.gather(
        _until(engine, count, None, started), _until(engine, count, "sent", started)
    )
    await engine.dispose()
    delivered = len({m.message_id for m in sinks.state.received("email", to=user["email"])})
    assert delivered == count, f"{delivered} of {count} emails reached the SMTP server"
    return {"publish": publish_seconds, "drain": drain, "complete": complete}


async def main() -> None:
    """Set up a Herald of its own, measure, print the JSON, tear down."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--prefetch", type=int, default=Settings().bridge_prefetch)
    args = parser.parse_args()

    async with local_herald(
        "bridge-bench",
        bridge_prefetch=args.prefetch,
        database_pool_size=5,
        amqp_url=f"amqp://guest:guest@127.0.0.1:5672/herald-bench-{uuid.uuid4().hex[:8]}",
    ) as bench:
        settings = bench.settings
        rabbitmq_vhost(vhost(settings), create=True)
        stack = Stack(settings, bench.work, queues=("core", "email"), bridge=True)
        try:
            for name, process in stack.processes.items():
                if name != "bridge":
                    process.start()
            await asyncio.to_thread(wait_http, f"{stack.api_url}/healthz")
            seconds = await measure(stack, args.count, bench.sinks)
        finally:
            stack.stop()
            rabbitmq_vhost(vhost(settings), create=False)
    print(
        json.dumps(
            {
                "messages": args.count,
                "prefetch": args.prefetch,
                "cpus": os.cpu_count(),
                "publish_per_second": round(args.count / seconds["publish"], 1),
                "bridge_drain_seconds": round(seconds["drain"], 1),
                "bridge_drain_per_second": round(args.count / seconds["drain"], 1),
                "workers_complete_seconds": round(seconds["complete"], 1),
                "workers_complete_per_second": round(args.count / seconds["complete"], 1),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
