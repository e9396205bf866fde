"""Accepting 1,000 notifications in one ``POST /v1/notifications/batch`` against 1,000
single ``POST /v1/notifications`` calls, in the same run.

    .venv/bin/python -m benchmarks.batch [--count 1000] [--concurrency 16] [--rounds 3]

On one Herald of its own (API, Temporal dev server, PostgreSQL; no workers, so that only
acceptance is measured: every 202 is a durably started workflow and its ``accepted``
row). Each round submits ``--count`` single calls from ``--concurrency`` callers on
kept-open connections, then the same number as one batch, each item with its own
idempotency key as the single calls have. Prints one JSON object: per round the seconds
and the CPU milliseconds per notification of the API, the Temporal server and
PostgreSQL for each way, and the ratios of time and API CPU; and the medians over the
rounds. The Temporal server does the same work per start either way, so it bounds the
time ratio on a small machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from typing import Any

import aiohttp

from benchmarks.environment import BenchHerald, CpuMeter, local_herald
from benchmarks.load import Callers
from herald.db import make_engine
from herald.tenants import create_api_key


def _item(n: int, run: str) -> dict[str, Any]:
    return {
        "channel": "email",
        "user_id": "bench",
        "template": "bench",
        "data": {"n": n},
        "idempotency_key": f"{run}-{n}",
    }


async def _singles(session: aiohttp.ClientSession, concurrency: int, count: int, run: str) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(n: int) -> None:
        async with gate:
            item = _item(n, run)
            key = item.pop("idempotency_key")
            async with session.post(
                "/v1/notifications", json=item, headers={"Idempotency-Key": key}
            ) as answer:
                assert answer.status == 202, await answer.text()

    await asyncio.gather(*(one(n) for n in range(count)))


async def _batch(session: aiohttp.ClientSession, count: int, run: str) -> None:
    body = {"notifications": [_item(n, run) for n in range(count)]}
    async with session.post("/v1/notifications/batch", json=body) as answer:
        assert answer.status == 200, await answer.text()
        statuses = {result["status"] for result in (await answer.json())["results"]}
        assert statuses == {202}, statuses


async def _measure(bench: BenchHerald, count: int, concurrency: int, rounds: int) -> dict[str, Any]:
    engine = make_engine(bench.settings, pool_size=1)
    key = await create_api_key(engine, f"bench-{uuid.uuid4().hex[:6]}")
    await engine.dispose()
    url = f"http://127.0.0.1:{bench.settings.api_port}"
    headers = {"Authorization": f"Bearer {key}"}
    results = []
    async with (
        Callers(url, 1, headers) as setup,
        aiohttp.ClientSession(
            base_url=url,
            headers=headers,
            connector=aiohttp.TCPConnector(limit=concurrency),
            timeout=aiohttp.ClientTimeout(total=300),
        ) as session,
    ):
        await setup.post("/v1/users", {"id": "bench", "email": "bench@example.com"}, 201)
        template = {"key": "bench", "channel": "email", "subject": "{{ n }}", "body": "<p>x</p>"}
        await setup.post("/v1/templates", template, 201)
        await _batch(session, 10, "warm-up")  # connections, caches, prepared statements
        for round_number in range(rounds):
            figures: dict[str, Any] = {"round": round_number + 1}
            for way in ("single", "batch"):
                pids = bench.pids()
                meter = CpuMeter(
                    {"api": pids["api"], "temporal": pids["temporal"]}, servers=("postgres",)
                )
                started = time.perf_counter()
                run = f"{way}-{round_number}-{uuid.uuid4().hex[:6]}"
                if way == "single":
                    await _singles(session, concurrency, count, run)
                else:
                    await _batch(session, count, run)
                seconds = time.perf_counter() - started
                cpu = meter.per_item(count)
                figures[way] = {
                    "seconds": round(seconds, 3),
                    "per_second": round(count / seconds, 1),
                    "api_cpu_ms_per_notification": round(cpu["api"], 3),
                    "temporal_cpu_ms_per_notification": round(cpu["temporal"], 3),
                    "postgres_cpu_ms_per_notification": round(cpu["postgres"], 3),
                }
            single, batch = figures["single"], figures["batch"]
            figures["time_ratio"] = round(single["seconds"] / batch["seconds"], 2)
            figures["api_cpu_ratio"] = round(
                figures["single"]["api_cpu_ms_per_notification"]
                / max(figures["batch"]["api_cpu_ms_per_notification"], 1e-9),
                2,
            )
            results.append(figures)
    return {
        "count": count,
        "single_concurrency": concurrency,
        "rounds": results,
        "median_time_ratio": statistics.median(r["time_ratio"] for r in results),
        "median_api_cpu_ratio": statistics.median(r["api_cpu_ratio"] for r in results),
    }


async def main() -> None:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16, help="single-call callers")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    # Admission control refuses what it cannot start within its wait; the comparison is
    # of the two paths at full speed, so the gate is made wide enough for both.
    async with local_herald("batch", api_max_concurrent_submissions=256) as bench:
        await bench.start("api")
        report = await _measure(bench, args.count, args.concurrency, args.rounds)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
