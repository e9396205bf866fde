"""End-to-end throughput: N emails through the real API, workers, Temporal and an SMTP
server, next to a bare two-no-op-activity workflow on the same Temporal dev server.

    .venv/bin/python -m benchmarks.throughput [--count 1000] [--concurrency 32]

Prints one JSON object. Both runs share the machine, the server and the process layout
(workers in their own processes), so their ratio is the number to watch.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from benchmarks.bare import BareWorkflow
from herald.db import Notification, make_engine
from herald.devserver import TemporalDevServer, free_port
from herald.migrate import ensure_database, upgrade
from herald.processes import ManagedProcess, herald_argv, wait_http
from herald.settings import Settings
from herald.sinks import Sinks
from herald.tenants import create_api_key


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) a process has used so far."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pid(process: ManagedProcess | TemporalDevServer) -> int | None:
    return process.process.pid if process.process is not None else None


async def _bounded(count: int, concurrency: int, job: Any) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await job(i)

    await asyncio.gather(*(one(i) for i in range(count)))


async def bare_rate(
    server: TemporalDevServer, count: int, concurrency: int, logs: Path, cpu_ms: dict[str, float]
) -> float:
    """Workflows per second for the baseline (CPU ms per workflow go into ``cpu_ms``)."""
    from temporalio.client import Client

    queue = f"bare-{uuid.uuid4().hex[:6]}"
    worker = ManagedProcess(
        "bare-worker", [sys.executable, "-m", "benchmarks.bare", server.address, queue], {}, logs
    ).start()
    try:
        client = await Client.connect(server.address)
        await client.execute_workflow(
            BareWorkflow.run, "warm-up", id=f"bare-warm-{queue}", task_queue=queue
        )
        server_cpu, worker_cpu = cpu_seconds(_pid(server)), cpu_seconds(_pid(worker))
        started = time.perf_counter()
        await _bounded(
            count,
            concurrency,
            lambda i: client.execute_workflow(
                BareWorkflow.run, str(i), id=f"bare-{queue}-{i}", task_queue=queue
            ),
        )
        rate = count / (time.perf_counter() - started)
        cpu_ms["bare.temporal"] = (cpu_seconds(_pid(server)) - server_cpu) * 1000 / count
        cpu_ms["bare.worker"] = (cpu_seconds(_pid(worker)) - worker_cpu) * 1000 / count
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
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{settings.api_port}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
        limits=httpx.Limits(max_connections=concurrency),
    ) as api:
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
            response = await api.post(
                "/v1/notifications/email",
                json={"user_id": "bench", "template": "bench", "data": {"n": i}},
            )
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])

        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
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

    work = Path(tempfile.mkdtemp(prefix="herald-bench-"))
    server = TemporalDevServer(work / "temporal.db", port=free_port(), headless=True).start()
    sinks = Sinks(smtp_port=free_port(), http_port=free_port()).start()
    run = uuid.uuid4().hex[:6]
    settings = Settings(
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:5432/herald_bench_{run}",
        temporal_address=server.address,
        task_queue_prefix=f"bench-{run}",
        api_port=free_port(),
        smtp_port=sinks.smtp_port,
        log_level="WARNING",
    )
    await ensure_database(settings.database_url)
    await asyncio.to_thread(upgrade, settings.database_url)
    env = settings.as_env()
    processes = [
        ManagedProcess("api", herald_argv("api"), env, work),
        ManagedProcess("core", herald_argv("worker", "--queue", "core"), env, work),
        ManagedProcess("email", herald_argv("worker", "--queue", "email"), env, work),
    ]
    try:
        cpu_ms: dict[str, float] = {}
        bare = await bare_rate(server, args.count, args.concurrency, work, cpu_ms)
        for process in processes:
            process.start()
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{settings.api_port}/healthz")
        pids = {"temporal": _pid(server), **{p.name: _pid(p) for p in processes}}
        herald = await herald_rate(settings, args.count, args.concurrency, sinks, pids, cpu_ms)
    finally:
        for process in processes:
            process.stop()
        sinks.stop()
        server.stop()
    print(
        json.dumps(
            {
                "notifications": args.count,
                "concurrency": args.concurrency,
                "herald_per_minute": round(herald["per_second"] * 60),
                "herald_accept_per_minute": round(herald["accept_per_second"] * 60),
                "bare_workflows_per_minute": round(bare * 60),
                "ratio_to_bare": round(herald["per_second"] / bare, 3),
                "cpu_ms_per_item": {name: round(ms, 1) for name, ms in cpu_ms.items()},
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
