"""End-to-end throughput: N emails through the real API, workers, Temporal and an SMTP
server, next to a bare two-no-op-activity workflow on the same Temporal dev server.

    .venv/bin/python -m benchmarks.throughput [--count 1000] [--concurrency 32] [--rounds 3]

Prints one JSON object: every round, and the medians over the rounds. All runs share the
machine, the server and the process layout (workers in their own processes), so their
ratio is the number to watch. In each round the baseline is measured twice, right before
Herald (started in one burst and drained, as Herald's notifications are) and right after
it (a closed loop with at most ``--concurrency`` workflows open); the ratio is to the
faster.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, select

from benchmarks.bare import BareWorkflow
from benchmarks.environment import (
    cpu_seconds,
    local_herald,
    machine_cpu_seconds,
    pid_of,
    postgres_cpu_seconds,
)
from devtools.devserver import TemporalDevServer
from devtools.processes import ManagedProcess
from devtools.sinks import Sinks
from herald.db import Notification, make_engine
from herald.settings import Settings
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


class LoadGenerator:
    """Callers that submit emails through Herald's API, each on one kept-open connection.

    Set up once per Herald (API key, user, template, one warm-up email); ``rate`` can then
    be measured any number of times. aiohttp rather than httpx: the load generator shares
    the two cores with what it measures, and httpx costs about six times its CPU per
    request (0.6 ms against 0.1 ms).
    """

    def __init__(self, settings: Settings, sinks: Sinks, concurrency: int) -> None:
        self.settings = settings
        self.sinks = sinks
        self.concurrency = concurrency
        self._stack = contextlib.AsyncExitStack()
        self._callers: asyncio.Queue[aiohttp.ClientSession] = asyncio.Queue()
        self._engine = make_engine(settings, pool_size=2)

    async def __aenter__(self) -> LoadGenerator:
        key = await create_api_key(self._engine, f"bench-{uuid.uuid4().hex[:6]}")
        for _ in range(self.concurrency):
            self._callers.put_nowait(
                await self._stack.enter_async_context(
                    aiohttp.ClientSession(
                        base_url=f"http://127.0.0.1:{self.settings.api_port}",
                        headers={"Authorization": f"Bearer {key}"},
                        connector=aiohttp.TCPConnector(limit=1),
                        timeout=aiohttp.ClientTimeout(total=60),
                    )
                )
            )
        await self._post("/v1/users", {"id": "bench", "email": "bench@example.com"}, 201)
        template = {
            "key": "bench",
            "channel": "email",
            "subject": "Order {{ n }}",
            "body": "<p>Order {{ n }} shipped</p>",
        }
        await self._post("/v1/templates", template, 201)
        await self._submit(-1)
        while self._delivered() < 1:
            await asyncio.sleep(0.1)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()
        await self._engine.dispose()

    async def _post(self, path: str, body: dict[str, Any], status: int) -> dict[str, Any]:
        caller = self._callers.get_nowait()  # never empty: at most ``concurrency`` at once
        try:
            async with caller.post(path, json=body) as response:
                answer: dict[str, Any] = await response.json()
                assert response.status == status, answer
                return answer
        finally:
            self._callers.put_nowait(caller)

    async def _submit(self, n: int) -> None:
        body = {"user_id": "bench", "template": "bench", "data": {"n": n}}
        await self._post("/v1/notifications/email", body, 202)

    def _delivered(self) -> int:
        return len({m.message_id for m in self.sinks.state.received("email")})

    async def _sent(self) -> int:
        async with self._engine.connect() as conn:
            query = select(func.count()).where(Notification.status == "sent")
            return int((await conn.execute(query)).scalar_one())

    async def rate(
        self, count: int, pids: dict[str, int | None], cpu_ms: dict[str, float]
    ) -> dict[str, float]:
        """Notifications per second from the first submission to the last ``sent``
        (CPU ms per notification of each process in ``pids`` go into ``cpu_ms``)."""
        sent, delivered = await self._sent(), self._delivered()
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        machine_cpu, postgres_cpu = machine_cpu_seconds(), postgres_cpu_seconds()
        own_cpu = time.process_time()  # the client and the sinks
        started = time.perf_counter()
        await _bounded(count, self.concurrency, self._submit)
        accepted = time.perf_counter() - started
        while await self._sent() < sent + count:
            await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - started
        for name, pid in pids.items():
            cpu_ms[f"herald.{name}"] = (cpu_seconds(pid) - before[name]) * 1000 / count
        cpu_ms["herald.postgres"] = (postgres_cpu_seconds() - postgres_cpu) * 1000 / count
        cpu_ms["herald.client_and_sinks"] = (time.process_time() - own_cpu) * 1000 / count
        cpu_ms["herald.machine"] = (machine_cpu_seconds() - machine_cpu) * 1000 / count
        arrived = self._delivered() - delivered
        assert arrived == count, f"{arrived} of {count} emails reached the SMTP server"
        return {"per_second": count / elapsed, "accept_per_second": count / accepted}


async def herald_rate(
    settings: Settings,
    count: int,
    concurrency: int,
    sinks: Sinks,
    pids: dict[str, int | None],
    cpu_ms: dict[str, float],
) -> dict[str, float]:
    """One measured run of ``count`` emails on a Herald of its own (see ``LoadGenerator``)."""
    async with LoadGenerator(settings, sinks, concurrency) as load:
        return await load.rate(count, pids, cpu_ms)


async def main() -> None:
    """Run the measurements round by round and print them."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    rounds: list[dict[str, Any]] = []
    async with local_herald("bench") as bench:
        await bench.start("api", "core", "email")
        async with LoadGenerator(bench.settings, bench.sinks, args.concurrency) as load:
            for _ in range(args.rounds):
                # Each round measures the baseline right before and right after Herald, so
                # all three meet the server's tables and the machine's speed alike.
                cpu_ms: dict[str, float] = {}
                burst = await bare_rate(
                    bench.server, args.count, args.concurrency, bench.work, cpu_ms, burst=True
                )
                herald = await load.rate(args.count, bench.pids(), cpu_ms)
                closed = await bare_rate(
                    bench.server, args.count, args.concurrency, bench.work, cpu_ms, burst=False
                )
                # The baseline is the faster of its two runs: started in one burst and
                # drained (as Herald's notifications are), or in a closed loop with at most
                # ``concurrency`` open (no backlog on the server).
                bare = max(burst, closed)
                rounds.append(
                    {
                        "herald_per_minute": round(herald["per_second"] * 60),
                        "herald_accept_per_minute": round(herald["accept_per_second"] * 60),
                        "bare_workflows_per_minute": round(bare * 60),
                        "ratio_to_bare": round(herald["per_second"] / bare, 3),
                        "bare_burst_per_minute": round(burst * 60),
                        "bare_closed_loop_per_minute": round(closed * 60),
                        "cpu_ms_per_item": {name: round(ms, 1) for name, ms in cpu_ms.items()},
                    }
                )
    summary = {
        key: statistics.median([r[key] for r in rounds])
        for key in ("herald_per_minute", "bare_workflows_per_minute", "ratio_to_bare")
    }
    print(
        json.dumps(
            {
                "notifications": args.count,
                "concurrency": args.concurrency,
                # Medians over the rounds: the machine's speed drifts within minutes, and
                # each round's ratio compares runs taken back to back.
                "median": summary,
                "rounds": rounds,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
