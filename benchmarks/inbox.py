"""The inbox stream under many open connections: N users each with an open
``GET /v1/inbox/stream`` (one process, aiohttp), messages created for them at a steady
rate, and how long each takes from its commit to its arrival at the client.

    .venv/bin/python -m benchmarks.inbox [--streams 1000] [--rate 50] [--seconds 20]

On one Herald API of its own (fresh database, no workers: messages are written with
``herald.inbox.store`` as the in-app provider step writes them). Prints one JSON object:
the streams opened and how long that took; the messages created and arrived; p50/p95/p99
from commit to arrival; and the API process's CPU seconds, in total and per connected
stream, while the streams sat idle (heartbeats only) and while messages flowed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import time
import uuid
from typing import Any

import aiohttp

from benchmarks.environment import cpu_seconds, local_herald, pid_of
from herald.db import make_engine
from herald.inbox import store, tokens
from herald.tenants import ensure_tenant


def _raise_file_limit(wanted: int) -> None:
    """Room for ``wanted`` sockets here and in the API (which inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


async def _stream(
    session: aiohttp.ClientSession,
    url: str,
    token: str,
    opened: asyncio.Event,
    sent_at: dict[str, float],
    latencies: list[float],
) -> None:
    async with session.get(url, params={"token": token}) as response:
        response.raise_for_status()
        event = ""
        async for raw in response.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "counts":
                opened.set()
            elif line.startswith("data:") and event == "message.created":
                title = json.loads(line[5:])["title"]
                latencies.append(time.monotonic() - sent_at[title])


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if len(values) < 2:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None}
    cuts = statistics.quantiles([v * 1000 for v in values], n=100, method="inclusive")
    return {
        "p50_ms": round(cuts[49], 1),
        "p95_ms": round(cuts[94], 1),
        "p99_ms": round(cuts[98], 1),
    }


async def run(streams: int, rate: float, seconds: float, idle_seconds: float) -> dict[str, Any]:
    _raise_file_limit(streams * 2 + 512)
    async with local_herald("inbox", database_pool_size=20) as bench:
        await bench.start("api")
        api_pid = pid_of(bench.processes["api"])
        engine = make_engine(bench.settings, pool_size=10)
        tenant = await ensure_tenant(engine, "bench")
        async with engine.begin() as conn:
            secret = await tokens.tenant_secret(conn, tenant.id)
        users = [f"user-{n}" for n in range(streams)]
        signed = [tokens.sign(secret, tokens.InboxUser(tenant.id, u), 3600)[0] for u in users]
        url = f"http://127.0.0.1:{bench.settings.api_port}/v1/inbox/stream"
        sent_at: dict[str, float] = {}
        latencies: list[float] = []
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            cpu_start = cpu_seconds(api_pid)
            started = time.monotonic()
            tasks, opened = [], []
            for token in signed:
                ready = asyncio.Event()
                opened.append(ready)
                tasks.append(
                    asyncio.create_task(_stream(session, url, token, ready, sent_at, latencies))
                )
                if len(tasks) % 50 == 0:  # a few at a time, as users arrive
                    await asyncio.gather(*(e.wait() for e in opened[-50:]))
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in opened)), 120)
            open_seconds = time.monotonic() - started
            cpu_opened = cpu_seconds(api_pid)

            await asyncio.sleep(idle_seconds)
            cpu_idle = cpu_seconds(api_pid)

            count = int(rate * seconds)
            begin = time.monotonic()

            async def create(n: int) -> None:
                title = f"m{n}"
                async with engine.begin() as conn:
                    await store.create_message(
                        conn,
                        tenant=tenant.id,
                        user_id=users[n % streams],
                        notification_id=uuid.uuid4(),
                        title=title,
                        body="benchmark",
                    )
                    # The clock starts as the transaction commits (leaving this block).
                    sent_at[title] = time.monotonic()

            writers = []
            for n in range(count):
                await asyncio.sleep(max(0.0, begin + n / rate - time.monotonic()))
                writers.append(asyncio.create_task(create(n)))
            await asyncio.gather(*writers)
            deadline = time.monotonic() + 30
            while len(latencies) < count and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            cpu_flow = cpu_seconds(api_pid)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await engine.dispose()
    return {
        "streams": streams,
        "open_seconds": round(open_seconds, 2),
        "messages": count,
        "rate_per_second": rate,
        "arrived": len(latencies),
        **_percentiles(latencies),
        "api_cpu_seconds": {
            "opening_per_stream": round((cpu_opened - cpu_start) / streams, 5),
            "idle_per_stream_per_minute": round(
                (cpu_idle - cpu_opened) / streams * 60 / idle_seconds, 5
            ),
            "messages_phase": round(cpu_flow - cpu_idle, 2),
            "per_message": round((cpu_flow - cpu_idle) / max(count, 1), 5),
            "per_stream_whole_run": round((cpu_flow - cpu_start) / streams, 5),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50.0, help="messages created per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    args = parser.parse_args()
    result = asyncio.run(run(args.streams, args.rate, args.seconds, args.idle_seconds))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
