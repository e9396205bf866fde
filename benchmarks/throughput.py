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
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.bare import BareWorkflow
from benchmarks.environment import CpuMeter, local_herald, pid_of
from benchmarks.load import LoadGenerator, closed_loop
from devtools.devserver import TemporalDevServer
from devtools.processes import ManagedProcess
from devtools.sinks import Sinks
from herald.settings import Settings


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
        meter = CpuMeter({"temporal": pid_of(server), "worker": pid_of(worker)}, servers=())
        started = time.perf_counter()
        run = client.start_workflow if burst else client.execute_workflow
        await closed_loop(
            count,
            concurrency,
            lambda i: run(BareWorkflow.run, str(i), id=f"{queue}-{i}", task_queue=queue),
        )
        done = f'TaskQueue="{queue}" AND ExecutionStatus="Completed"'
        while burst and (await client.count_workflows(done)).count < count + 1:
            await asyncio.sleep(0.2)
        rate = count / (time.perf_counter() - started)
        cpu_ms.update({f"bare_{mode}.{name}": ms for name, ms in meter.per_item(count).items()})
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
