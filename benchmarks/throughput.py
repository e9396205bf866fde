"""End-to-end throughput: N emails through the real API, workers, Temporal and an SMTP
server, next to two baselines on the same Temporal dev server: a bare workflow of two
no-op activities, and the same with two no-op local activities in one workflow task (the
floor of Herald's one-task shape). Also what one run of each cost Temporal, counted from
real histories (``devtools/histories.py``): events, workflow tasks, billable actions.

    .venv/bin/python -m benchmarks.throughput [--count 1000] [--concurrency 32] [--rounds 3]

Prints one JSON object: every round, and the medians over the rounds. All runs share the
machine, the server and the process layout (workers in their own processes), so their
ratio is the number to watch. In each round the baseline is measured twice, right before
Herald (started in one burst and drained, as Herald's notifications are) and right after
it (a closed loop with at most ``--concurrency`` workflows open); the ratio is to the
faster. The local-activity baseline is measured the same way.

``--webhook`` also runs ``herald webhooks`` and measures Herald a second time in each
round with one webhook endpoint (a local receiver answering 200) subscribed to every
event: ``webhook_ratio`` is that rate over the rate without, from the same round, and
``webhook_drain_seconds`` how long from the first submission until the receiver had the
last event.
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

from benchmarks.bare import BareLocalWorkflow, BareWorkflow
from benchmarks.environment import BenchHerald, CpuMeter, local_herald, pid_of
from benchmarks.load import LoadGenerator, closed_loop
from benchmarks.webhook import WebhookReceiver, drained, subscribe, unsubscribe
from devtools.devserver import TemporalDevServer
from devtools.histories import shape
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
    workflow: type = BareWorkflow,
) -> float:
    """Workflows per second for the baseline (CPU ms per workflow go into ``cpu_ms``).

    ``burst``: start all ``count`` as fast as the server takes them (``concurrency``
    starts at a time), then wait until all have completed: what the Herald run does
    through its API. Otherwise each of ``concurrency`` callers starts one and waits for
    its result before starting the next, so at most ``concurrency`` are ever open.
    """
    from temporalio.client import Client

    kind = "bare" if workflow is BareWorkflow else "bare_local"
    mode = "burst" if burst else "closed"
    queue = f"{kind}-{mode}-{uuid.uuid4().hex[:6]}"
    worker = ManagedProcess(
        "bare-worker", [sys.executable, "-m", "benchmarks.bare", server.address, queue], {}, logs
    ).start()
    try:
        client = await Client.connect(server.address)
        await client.execute_workflow(
            workflow.run,  # type: ignore[attr-defined]
            "warm-up",
            id=f"bare-warm-{queue}",
            task_queue=queue,
        )
        meter = CpuMeter({"temporal": pid_of(server), "worker": pid_of(worker)}, servers=())
        started = time.perf_counter()
        run = client.start_workflow if burst else client.execute_workflow
        await closed_loop(
            count,
            concurrency,
            lambda i: run(
                workflow.run,  # type: ignore[attr-defined]
                str(i),
                id=f"{queue}-{i}",
                task_queue=queue,
            ),
        )
        done = f'TaskQueue="{queue}" AND ExecutionStatus="Completed"'
        while burst and (await client.count_workflows(done)).count < count + 1:
            await asyncio.sleep(0.2)
        rate = count / (time.perf_counter() - started)
        cpu_ms.update({f"{kind}_{mode}.{name}": ms for name, ms in meter.per_item(count).items()})
        return rate
    finally:
        worker.stop()


async def baselines(
    bench: BenchHerald,
    count: int,
    concurrency: int,
    cpu_ms: dict[str, float],
    runs: dict[str, float],
    *,
    burst: bool,
) -> None:
    """Measure both baselines one way (see ``bare_rate``); rates go into ``runs``."""
    for workflow in (BareWorkflow, BareLocalWorkflow):
        mode = "burst" if burst else "closed"
        runs[f"{workflow.__name__}.{mode}"] = await bare_rate(
            bench.server, count, concurrency, bench.work, cpu_ms, burst=burst, workflow=workflow
        )


async def history_shapes(server: TemporalDevServer) -> dict[str, dict[str, int]]:
    """Events, workflow tasks and billable actions of one completed run of each kind."""
    from temporalio.client import Client

    client = await Client.connect(server.address)
    shapes = {}
    for name, query in (
        ("herald", "WorkflowType = 'NotificationWorkflow'"),
        ("bare", "WorkflowType = 'BareWorkflow'"),
        ("bare_local", "WorkflowType = 'BareLocalWorkflow'"),
    ):
        async for execution in client.list_workflows(
            f"{query} AND ExecutionStatus = 'Completed'", limit=1
        ):
            history = await client.get_workflow_handle(execution.id).fetch_history()
            cost = shape(history)
            shapes[name] = {
                "events": cost.events,
                "workflow_tasks": cost.workflow_tasks,
                "billable_actions": cost.actions,
            }
    return shapes


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


async def webhook_rate(
    bench: BenchHerald, load: LoadGenerator, receiver: WebhookReceiver, count: int
) -> dict[str, Any]:
    """One measured run like ``herald_rate``'s with ``receiver`` subscribed to every event
    of the benchmark tenant, then until the dispatcher owes it nothing."""
    endpoint = await subscribe(load.api_url, load.api_key, receiver.url)
    received = receiver.received
    cpu_ms: dict[str, float] = {}
    started = time.perf_counter()
    run = await load.rate(count, bench.pids(), cpu_ms)
    await drained(bench.settings)
    drain = receiver.last_at - started
    await unsubscribe(load.api_url, load.api_key, endpoint)
    return {
        "per_second": run["per_second"],
        "events": receiver.received - received,
        "drain_seconds": round(drain, 2),
        "cpu_ms": {f"with_webhook.{name}": ms for name, ms in cpu_ms.items()},
    }


async def main() -> None:
    """Run the measurements round by round and print them."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--webhook", action="store_true", help="also measure with one webhook endpoint"
    )
    args = parser.parse_args()

    rounds: list[dict[str, Any]] = []
    overrides = {"webhooks_allow_private": True} if args.webhook else {}
    async with local_herald("bench", **overrides) as bench, contextlib.AsyncExitStack() as stack:
        await bench.start("api", "core", "email", *(["webhooks"] if args.webhook else []))
        receiver = await stack.enter_async_context(WebhookReceiver()) if args.webhook else None
        async with LoadGenerator(bench.settings, bench.sinks, args.concurrency) as load:
            for _ in range(args.rounds):
                # Each round measures the baselines right before and right after Herald,
                # so all meet the server's tables and the machine's speed alike.
                cpu_ms: dict[str, float] = {}
                runs: dict[str, float] = {}

                await baselines(bench, args.count, args.concurrency, cpu_ms, runs, burst=True)
                herald = await load.rate(args.count, bench.pids(), cpu_ms)
                hooked = None
                if receiver is not None:
                    hooked = await webhook_rate(bench, load, receiver, args.count)
                    cpu_ms.update(hooked.pop("cpu_ms"))
                await baselines(bench, args.count, args.concurrency, cpu_ms, runs, burst=False)
                # Each baseline is the faster of its two runs: started in one burst and
                # drained (as Herald's notifications are), or in a closed loop with at most
                # ``concurrency`` open (no backlog on the server).
                bare = max(runs["BareWorkflow.burst"], runs["BareWorkflow.closed"])
                local = max(runs["BareLocalWorkflow.burst"], runs["BareLocalWorkflow.closed"])
                webhook = (
                    {
                        "herald_webhook_per_minute": round(hooked["per_second"] * 60),
                        "webhook_ratio": round(hooked["per_second"] / herald["per_second"], 3),
                        "webhook_events": hooked["events"],
                        "webhook_drain_seconds": hooked["drain_seconds"],
                    }
                    if hooked
                    else {}
                )
                rounds.append(
                    webhook
                    | {
                        "herald_per_minute": round(herald["per_second"] * 60),
                        "herald_accept_per_minute": round(herald["accept_per_second"] * 60),
                        "bare_workflows_per_minute": round(bare * 60),
                        "bare_local_workflows_per_minute": round(local * 60),
                        "ratio_to_bare": round(herald["per_second"] / bare, 3),
                        "ratio_to_bare_local": round(herald["per_second"] / local, 3),
                        "baseline_runs_per_minute": {k: round(v * 60) for k, v in runs.items()},
                        "cpu_ms_per_item": {name: round(ms, 1) for name, ms in cpu_ms.items()},
                    }
                )
        shapes = await history_shapes(bench.server)
    summary = {
        key: statistics.median([r[key] for r in rounds])
        for key in (
            "herald_per_minute",
            "bare_workflows_per_minute",
            "bare_local_workflows_per_minute",
            "ratio_to_bare",
            "ratio_to_bare_local",
            *(["herald_webhook_per_minute", "webhook_ratio"] if args.webhook else []),
        )
    }
    print(
        json.dumps(
            {
                "notifications": args.count,
                "concurrency": args.concurrency,
                # Medians over the rounds: the machine's speed drifts within minutes, and
                # each round's ratio compares runs taken back to back.
                "median": summary,
                "history_per_run": shapes,
                "rounds": rounds,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
