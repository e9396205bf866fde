"""The console overview's queries (api/services/overview.py) at 1,000,000 notifications.

Seeds one tenant's notifications, spread evenly over the last ``--days`` (default 7, so
the last day holds about 143,000 of them), with the status events a real send writes
(accepted, sending, sent, then delivered, undelivered, failed, suppressed or cancelled),
into a database of its own with Herald's migrations, using ``INSERT ... SELECT
generate_series``; then runs each query ``--runs`` times and the whole overview (the
queries side by side, as the page does) as often.

    .venv/bin/python -m benchmarks.overview [--notifications 1000000] [--days 7] [--runs 20]

Prints one JSON object: p50 and p95 milliseconds per query, the 200 ms budget, and each
query's plan (node types and the indexes they read). The database is dropped afterwards
unless ``--keep``; ``--reuse NAME`` times an already seeded one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.services import overview
from herald.db import make_engine
from herald.migrate import drop_database, ensure_database, upgrade
from herald.settings import Settings
from herald.tenants import TenantContext

BUDGET_MS = 200.0
# The failure reasons of each channel's failed and undelivered notifications.
REASONS = {
    "email": ["SMTP 550 5.1.1 mailbox unavailable", "SMTP 552 5.2.2 mailbox full"],
    "sms": ["Twilio 21211: invalid 'To' phone number", "Twilio 30003: unreachable handset"],
    "push": ["FCM UNREGISTERED: the device token is no longer valid"],
}

# One row per notification: a channel, an outcome drawn from a fixed mix (0.4 % failed
# or undelivered, 2 % suppressed, 0.5 % cancelled, 0.3 % still sending), a send 0.2 to
# 3 s after acceptance and, for most SMS and push, a receipt 3 s after that.
_NOTIFICATIONS = """
INSERT INTO notifications (
    id, tenant_id, channel, user_id, template, template_version, data, status, cycle,
    attempts, provider, last_error, created_at, updated_at, test, leg)
SELECT gen_random_uuid(), :tenant, channel, 'user-' || (g % 50000), 'template-' || (g % 20),
       1, '{}'::jsonb, status, 1, CASE WHEN status IN ('suppressed', 'cancelled') THEN 0 ELSE 1 END,
       CASE channel WHEN 'email' THEN 'smtp' WHEN 'sms' THEN 'twilio' ELSE 'fcm' END,
       CASE WHEN status IN ('failed', 'undelivered')
            THEN CASE channel
                WHEN 'email' THEN (CAST(:email AS text[]))[1 + (g / 7) % 2]
                WHEN 'sms' THEN (CAST(:sms AS text[]))[1 + (g / 7) % 2]
                ELSE (CAST(:push AS text[]))[1] END
            WHEN status = 'suppressed' THEN 'the user opted out of this channel' END,
       created_at,
       created_at + CASE status
           WHEN 'delivered' THEN latency + interval '3 seconds'
           WHEN 'undelivered' THEN latency + interval '3 seconds'
           WHEN 'suppressed' THEN interval '50 milliseconds'
           WHEN 'cancelled' THEN interval '1 second'
           ELSE latency END,
       false, 0
FROM (
    SELECT g, channel, created_at, latency,
           CASE WHEN r < 3 THEN 'failed' WHEN r < 4 THEN 'undelivered'
                WHEN r < 24 THEN 'suppressed' WHEN r < 29 THEN 'cancelled'
                WHEN r < 32 THEN 'sending'
                WHEN channel <> 'email' AND r < 700 THEN 'delivered'
                ELSE 'sent' END AS status
    FROM (
        SELECT g, (ARRAY['email', 'email', 'sms', 'push'])[1 + g % 4] AS channel,
               (g * 7919) % 1000 AS r,
               now() - make_interval(secs => CAST(:span AS float8) * g / :total) AS created_at,
               interval '200 milliseconds' + interval '1 millisecond' * ((g * 104729) % 2800)
                   AS latency
        FROM generate_series(1, CAST(:total AS bigint)) AS g
    ) AS drawn
) AS decided
"""

# The log of each notification, derived from its row: (status, event time, which rows).
_SENT_AT = (
    "CASE WHEN status IN ('delivered', 'undelivered') "
    "THEN updated_at - interval '3 seconds' ELSE updated_at END"
)
_EVENTS = [
    ("accepted", "created_at", "true"),
    ("sending", "created_at + interval '50 milliseconds'", "status NOT IN ('suppressed')"),
    ("sent", _SENT_AT, "status IN ('sent', 'delivered', 'undelivered')"),
    ("delivered", "updated_at", "status = 'delivered'"),
    ("undelivered", "updated_at", "status = 'undelivered'"),
    ("failed", "updated_at", "status = 'failed'"),
    ("suppressed", "updated_at", "status = 'suppressed'"),
    ("cancelled", "updated_at", "status = 'cancelled'"),
]


async def seed(engine: AsyncEngine, tenant_id: uuid.UUID, total: int, days: float) -> float:
    """Write the tenant and its notifications and events; returns the seconds it took."""
    started = time.perf_counter()
    async with engine.begin() as conn:
        await conn.execute(text("SET LOCAL synchronous_commit = off"))
        await conn.execute(
            text("INSERT INTO tenants (id, name) VALUES (:id, :name)"),
            {"id": tenant_id, "name": f"bench-{tenant_id.hex[:8]}"},
        )
        await conn.execute(
            text(_NOTIFICATIONS),
            {
                "tenant": tenant_id,
                "total": total,
                "span": days * 86400.0,
                **REASONS,
            },
        )
        for status, at, which in _EVENTS:
            # Event keys as the status log writes them (cycle:status:attempt).
            attempt = "0" if status in ("accepted", "suppressed", "cancelled") else "1"
            await conn.execute(
                text(
                    "INSERT INTO notification_events "
                    "(notification_id, event_key, status, cycle, attempt, provider, at) "
                    f"SELECT id, '1:{status}:{attempt}', '{status}', 1, {attempt}, provider, {at} "
                    f"FROM notifications WHERE tenant_id = :tenant AND {which}"
                ),
                {"tenant": tenant_id},
            )
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE notifications"))
        await conn.execute(text("VACUUM ANALYZE notification_events"))
    return time.perf_counter() - started


def _plan_nodes(node: dict[str, Any]) -> Iterator[str]:
    name = node["Node Type"]
    if "Index Name" in node:
        name += f" on {node['Index Name']}"
    yield name
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)


async def plan(engine: AsyncEngine, query: Select[Any]) -> dict[str, Any]:
    """The query's plan as PostgreSQL runs it (EXPLAIN ANALYZE): its nodes, in order."""
    compiled = query.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
    params = [compiled.params[name] for name in compiled.positiontup or []]
    async with engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        for setting, value in overview.QUERY_SETTINGS.items():
            await raw.execute(f"SET {setting} = '{value}'")
        found = await raw.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {compiled}", *params)
    top = (json.loads(found) if isinstance(found, str) else found)[0]
    return {
        "nodes": list(_plan_nodes(top["Plan"])),
        "execution_ms": round(top["Execution Time"], 2),
    }


async def _timed(runs: int, call: Callable[[], Awaitable[Any]]) -> dict[str, float]:
    await call()  # warm the cache and the connection pool
    took = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        took.append((time.perf_counter() - started) * 1000)
    took.sort()
    return {
        "p50_ms": round(statistics.median(took), 2),
        "p95_ms": round(took[min(len(took) - 1, round(0.95 * (len(took) - 1)))], 2),
        "max_ms": round(took[-1], 2),
    }


async def measure(engine: AsyncEngine, tenant: TenantContext, runs: int) -> dict[str, Any]:
    """Time every overview query and the whole overview; with their plans."""
    now = datetime.now(UTC)
    queries: dict[str, tuple[Select[Any], Callable[[], Awaitable[Any]]]] = {
        "outcomes_hour": (
            overview.outcome_counts_query(tenant, overview.HOUR, now),
            lambda: overview.outcome_counts(engine, tenant, overview.HOUR, now),
        ),
        "outcomes_day": (
            overview.outcome_counts_query(tenant, overview.DAY, now),
            lambda: overview.outcome_counts(engine, tenant, overview.DAY, now),
        ),
        "latency": (
            overview.latency_query(tenant, now),
            lambda: overview.latency(engine, tenant, now),
        ),
        "top_failures": (
            overview.failures_query(tenant, now),
            lambda: overview.top_failures(engine, tenant, now),
        ),
    }
    results: dict[str, Any] = {}
    for name, (query, call) in queries.items():
        results[name] = await _timed(runs, call) | {"plan": await plan(engine, query)}
    results["whole_overview"] = await _timed(runs, lambda: overview.overview(engine, tenant, now))
    return results


async def main(args: argparse.Namespace) -> dict[str, Any]:
    name = args.reuse or f"herald_bench_overview_{uuid.uuid4().hex[:6]}"
    settings = Settings(database_url=f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}")
    created = False
    if not args.reuse:
        created = await ensure_database(settings.database_url)
        await asyncio.to_thread(upgrade, settings.database_url)
    engine = make_engine(settings, pool_size=4)
    try:
        if args.reuse:
            async with engine.connect() as conn:
                tenant_id = (
                    await conn.execute(text("SELECT id FROM tenants WHERE name LIKE 'bench-%'"))
                ).scalar_one()
                total = (
                    await conn.execute(
                        text("SELECT count(*) FROM notifications WHERE tenant_id = :t"),
                        {"t": tenant_id},
                    )
                ).scalar_one()
            seed_seconds = None
        else:
            tenant_id, total = uuid.uuid4(), args.notifications
            seed_seconds = round(await seed(engine, tenant_id, total, args.days), 1)
        async with engine.connect() as conn:
            events = (
                await conn.execute(text("SELECT count(*) FROM notification_events"))
            ).scalar_one()
        tenant = TenantContext(tenant_id, "bench")
        results = await measure(engine, tenant, args.runs)
    finally:
        await engine.dispose()
        if created and not args.keep:
            await drop_database(settings.database_url)
    slowest = max(value["p95_ms"] for key, value in results.items() if key != "whole_overview")
    return {
        "notifications": total,
        "events": events,
        "days": args.days,
        "seed_seconds": seed_seconds,
        "runs": args.runs,
        "budget_ms": BUDGET_MS,
        "within_budget": slowest < BUDGET_MS,
        "queries": results,
        "database": name if (args.keep or args.reuse) else None,
    }


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notifications", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the seeded database")
    parser.add_argument("--reuse", metavar="NAME", help="time an already seeded database")
    return parser.parse_args()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(_arguments())), indent=2))
