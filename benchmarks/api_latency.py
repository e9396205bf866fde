"""Latency of ``POST /v1/notifications`` under open-loop load: requests go out on a fixed
schedule, not when earlier ones are answered, so a slow API shows as latency (and
refusals) instead of slowing the load down.

    .venv/bin/python -m benchmarks.api_latency [--step-seconds 30] [--rate-count 300]

On one Herald of its own: first the end-to-end rate, measured as ``benchmarks.throughput``
does (a short closed loop, first submission to last ``sent``); then, with the workers
running, one step each at 25 %, 50 %, 100 % and 200 % of that rate, each drained (every
accepted notification must be ``sent`` within ``--drain-timeout``) before the next; then,
with the worker processes stopped, ingest alone at 50, 100 and 200 requests a second.

Prints one JSON object. Per step: the latency percentiles of every answered request,
counted from when it was due; accepted (202), refused (503 with ``Retry-After``) and
errors (anything else, timeouts and dropped connections included); the answers per
second actually achieved; the API's CPU per request and how many cores the machine kept
busy; and, with workers, whether every accepted notification was delivered (``sent``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import aiohttp

from benchmarks.environment import BenchHerald, CpuMeter, local_herald
from benchmarks.load import Answer, LoadGenerator, open_loop

WORKER_SHARES = (0.25, 0.5, 1.0, 2.0)
INGEST_RATES = (50.0, 100.0, 200.0)


def summary(rate: float, answers: list[Answer], seconds: float) -> dict[str, Any]:
    """One step's figures (see the module docstring)."""
    latencies = [a.latency * 1000 for a in answers if a.status is not None]
    # 99 cut points: [49] is the median, [94] the 95th percentile, [98] the 99th.
    cuts = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else []
    accepted = sum(a.status == 202 for a in answers)
    refused = sum(a.status == 503 and a.retry_after for a in answers)
    return {
        "target_per_second": round(rate, 1),
        "requests": len(answers),
        "achieved_per_second": round(len(latencies) / seconds, 1),
        "p50_ms": round(cuts[49], 1) if cuts else None,
        "p95_ms": round(cuts[94], 1) if cuts else None,
        "p99_ms": round(cuts[98], 1) if cuts else None,
        "accepted": accepted,
        "refused": refused,
        "errors": len(answers) - accepted - refused,
    }


async def step(
    bench: BenchHerald, session: aiohttp.ClientSession, rate: float, seconds: float
) -> tuple[dict[str, Any], list[str]]:
    """Run one open-loop step; its figures and the ids of the notifications it got
    accepted."""

    async def request(i: int) -> Answer:
        try:
            async with session.post("/v1/notifications", json=LoadGenerator.request(i)) as answer:
                body = await answer.json() if answer.status == 202 else await answer.read()
                return Answer(0.0, answer.status, "Retry-After" in answer.headers, body)
        except (aiohttp.ClientError, TimeoutError):
            return Answer(0.0, None)

    meter = CpuMeter({"api": bench.pids()["api"]}, servers=())
    answers, elapsed = await open_loop(rate, seconds, request)
    cpu_ms = meter.per_item(1)
    figures = summary(rate, answers, elapsed) | {
        "api_cpu_ms_per_request": round(cpu_ms["api"] / len(answers), 2),
        # Near the number of cores, the machine and not the API was the limit.
        "machine_cores_busy": round(cpu_ms["machine"] / 1000 / elapsed, 2),
    }
    return figures, [a.body["id"] for a in answers if a.status == 202]


async def drained(load: LoadGenerator, ids: list[str], timeout: float) -> dict[str, Any]:
    """Wait (at most ``timeout`` seconds) until every notification of ``ids`` is ``sent``."""
    started = time.perf_counter()
    sent = await load.sent(ids)
    while sent < len(ids) and time.perf_counter() - started < timeout:
        await asyncio.sleep(0.5)
        sent = await load.sent(ids)
    return {
        "sent": sent,
        "all_delivered": sent == len(ids),
        "drain_seconds": round(time.perf_counter() - started, 1),
    }


async def main() -> None:
    """Measure the end-to-end rate, run the steps, print."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--step-seconds", type=float, default=30.0)
    parser.add_argument("--rate-count", type=int, default=300, help="emails for the rate run")
    parser.add_argument("--concurrency", type=int, default=32, help="callers of the rate run")
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument("--connections", type=int, default=256, help="open-loop connections")
    args = parser.parse_args()

    with_workers: list[dict[str, Any]] = []
    ingest_only: list[dict[str, Any]] = []
    # The per-key rate limit would answer 429 long before the API itself is the limit.
    async with local_herald("latency", rate_limit_per_minute=10**9) as bench:
        await bench.start("api", "core", "email")
        async with (
            LoadGenerator(bench.settings, bench.sinks, args.concurrency) as load,
            aiohttp.ClientSession(
                base_url=load.api_url,
                headers={"Authorization": f"Bearer {load.api_key}"},
                connector=aiohttp.TCPConnector(limit=args.connections),
                timeout=aiohttp.ClientTimeout(total=30),
            ) as session,
        ):
            end_to_end = (await load.rate(args.rate_count, bench.pids(), {}))["per_second"]
            for share in WORKER_SHARES:
                figures, ids = await step(bench, session, end_to_end * share, args.step_seconds)
                with_workers.append(
                    {"share_of_end_to_end": share}
                    | figures
                    | await drained(load, ids, args.drain_timeout)
                )
            await bench.stop("core", "email")
            for rate in INGEST_RATES:
                ingest_only.append((await step(bench, session, rate, args.step_seconds))[0])
    print(
        json.dumps(
            {
                "step_seconds": args.step_seconds,
                "end_to_end_per_second": round(end_to_end, 1),
                "with_workers": with_workers,
                "ingest_only": ingest_only,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
