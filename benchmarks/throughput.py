"""End-to-end throughput: N emails through the real API, workers, Temporal and an SMTP
server, next to a bare two-no-op-activity workflow on the same Temporal dev server.

    .venv/bin/python -m benchmarks.throughput [--count 1000] [--concurrency 32]

Prints one JSON object. All runs share the machine, the server and the process layout
(workers in their own processes), so their ratio is the number to watch. The baseline is
measured twice, started in one burst and drained (as Herald's notifications are) and in
a closed loop with at most ``--concurrency`` workflows open; the ratio is to the faster.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from benchmarks.bare import BareWorkflow
from benchmarks.environment import (
    cpu_seconds,
    local_herald,
    machine_cpu_seconds,
    pid_of,
    postgres_cpu_seconds,
)
from herald.db import Notification, make_engine
from herald.devserver import TemporalDevServer
from herald.processes import ManagedProcess
from herald.settings import Settings
from herald.sinks import Sinks
from herald.tenants import create_api_key


async def _bounded(count: int, concurrency: int, job: Any) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await job(i)

    await asyncio.gather(*(one(i) for i in range(count)))


async def bare_rate(
    server: TemporalDevServer,
    count: int,
    concurrency: int,
    logs: Path,
    cpu_ms: dict[str, float],
    *,
    burst: bool,
) -> float:
    """Workflows per second for the baseline (CPU ms per workflow go into ``cpu_ms``).

    ``burst``: start all ``count`` as fast as the server takes them (``concurrency``
    starts at a time), then wait until all have completed: what the Herald run does
    through its API. Otherwise each of ``concurrency`` callers starts one and waits for
    its result before starting the next, so at most ``concurrency`` are ever open.
    """
    from temporalio.client import Client

    mode = "burst" if burst else "closed"
    queue = f"bare-{mode}-{uuid.uuid4().hex[:6]}"
    worker = ManagedProcess(
        "bare-worker", [sys.executable, "-m", "benchmarks.bare", server.address, queue], {}, logs
    ).start()
    try:
        client = await Client.connect(server.address)
        await client.execute_workflow(
            BareWorkflow.run, "warm-up", id=f"bare-warm-{queue}", task_queue=queue
        )
        server_cpu, worker_cpu = cpu_seconds(pid_of(server)), cpu_seconds(pid_of(worker))
        machine_cpu = machine_cpu_seconds()
        started = time.perf_counter()
        run = client.start_workflow if burst else client.execute_workflow
        await _bounded(
            count,
            concurrency,
            lambda i: run(BareWorkflow.run, str(i), id=f"{queue}-{i}", task_queue=queue),
        )
        done = f'TaskQueue="{queue}" AND ExecutionStatus="Completed"'
        while burst and (await client.count_workflows(done)).count < count + 1:
            await asyncio.sleep(0.2)
        rate = count / (time.perf_counter() - started)
        cpu_ms[f"bare_{mode}.temporal"] = (cpu_seconds(pid_of(server)) - server_cpu) * 1000 / count
        cpu_ms[f"bare_{mode}.worker"] = (cpu_seconds(pid_of(worker)) - worker_cpu) * 1000 / count
        cpu_ms[f"bare_{mode}.machine"] = (machine_cpu_seconds() - machine_cpu) * 1000 / count
        return rate
    finally:
        worker.stop()


async def herald_rate(
    settings: Settings,
    count: int,
    concurrency: int,
    sinks: Sinks,
    pids: dict[str, int | None],
    cpu_ms: dict[str, float],
) -> dict[str, float]:
    """Notifications per second from the first submission to the last ``sent``
    (CPU ms per notification of each process in ``pids`` go into ``cpu_ms``)."""
    engine = make_engine(settings, pool_size=2)
    key = await create_api_key(engine, f"bench-{uuid.uuid4().hex[:6]}")
    # One single-connection client per caller: httpx's pool scans every connection on
    # each request, which at 32 connections costs the load generator more than the API.
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{settings.api_port}",
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=60,
                    limits=httpx.Limits(max_connections=1),
                )
            )
            for _ in range(concurrency)
        ]
        callers: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
        for client in clients:
            callers.put_nowait(client)
        api = clients[0]
        assert (
            await api.post("/v1/users", json={"id": "bench", "email": "bench@example.com"})
        ).status_code == 201
        assert (
            await api.post(
                "/v1/templates",
                json={
                    "key": "bench",
                    "channel": "email",
                    "subject": "Order {{ n }}",
                    "body": "<p>Order {{ n }} shipped</p>",
                },
            )
        ).status_code == 201
        warm = await api.post(
            "/v1/notifications/email",
            json={"user_id": "bench", "template": "bench", "data": {"n": -1}},
        )
        assert warm.status_code == 202, warm.text
        while len(sinks.state.received("email")) < 1:
            await asyncio.sleep(0.1)

        ids: list[str] = []

        async def submit(i: int) -> None:
            caller = callers.get_nowait()  # never empty: at most ``concurrency`` run at once
            try:
                response = await caller.post(
                    "/v1/notifications/email",
                    json={"user_id": "bench", "template": "bench", "data": {"n": i}},
                )
            finally:
                callers.put_nowait(caller)
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])

        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        machine_cpu, postgres_cpu = machine_cpu_seconds(), postgres_cpu_seconds()
        own_cpu = time.process_time()  # the client and the sinks
        started = time.perf_counter()
        await _bounded(count, concurrency, submit)
        accepted = time.perf_counter() - started
        query = select(func.count()).where(Notification.status == "sent")
        while True:
            async with engine.connect() as conn:
                sent = (await conn.execute(query)).scalar_one() - 1
            if sent >= count:
                break
            await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - started
        for name, pid in pids.items():
            cpu_ms[f"herald.{name}"] = (cpu_seconds(pid) - before[name]) * 1000 / count
        cpu_ms["herald.postgres"] = (postgres_cpu_seconds() - postgres_cpu) * 1000 / count
        cpu_ms["herald.client_and_sinks"] = (time.process_time() - own_cpu) * 1000 / count
        cpu_ms["herald.machine"] = (machine_cpu_seconds() - machine_cpu) * 1000 / count
    await engine.dispose()
    delivered = len({m.message_id for m in sinks.state.received("email")}) - 1
    assert delivered == count, f"{delivered} of {count} emails reached the SMTP server"
    return {"per_second": count / elapsed, "accept_per_second": count / accepted}


async def main() -> None:
    """Run both measurements and print them."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    cpu_ms: dict[str, float] = {}
    async with local_herald("bench") as bench:
        # The baseline runs before and after Herald, so neither side alone meets the
        # server's history and visibility tables at their largest.
        bare = {
            True: await bare_rate(
                bench.server, args.count, args.concurrency, bench.work, cpu_ms, burst=True
            )
        }
        await bench.start("api", "core", "email")
        herald = await herald_rate(
            bench.settings, args.count, args.concurrency, bench.sinks, bench.pids(), cpu_ms
        )
        bare[False] = await bare_rate(
            bench.server, args.count, args.concurrency, bench.work, cpu_ms, burst=False
        )
    print(
        json.dumps(
            {
                "notifications": args.count,
                "concurrency": args.concurrency,
                "herald_per_minute": round(herald["per_second"] * 60),
                "herald_accept_per_minute": round(herald["accept_per_second"] * 60),
                # The baseline is the faster of its two runs: started in one burst and
                # drained (as Herald's notifications are), or in a closed loop with at most
                # ``concurrency`` open (no backlog on the server).
                "bare_workflows_per_minute": round(max(bare.values()) * 60),
                "ratio_to_bare": round(herald["per_second"] / max(bare.values()), 3),
                "bare_burst_per_minute": round(bare[True] * 60),
                "bare_closed_loop_per_minute": round(bare[False] * 60),
                "cpu_ms_per_item": {name: round(ms, 1) for name, ms in cpu_ms.items()},
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
