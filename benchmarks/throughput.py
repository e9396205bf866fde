"""End-to-end throughput: N emails through the real API, workers, Temporal and an SMTP
server, next to two baselines on the same Temporal dev server: a bare workflow of two
no-op activities, and the same with two no-op local activities in one workflow task (the
floor of Herald's one-task shape). Also what one run of each cost Temporal, counted from
real histories (``devtools/histories.py``): events, workflow tasks, billable actions.

    .venv/bin/python -m benchmarks.throughput [--count 1000] [--concurrency 32] \\
        [--rounds 3] [--body-kb 0,30] [--webhook] [--eager]

The baselines run as Herald does: their worker is one long-lived process on Herald's
runtime (unsandboxed, uvloop, ``tune_gc``, the same worker slots and the same encrypting
data converter; see ``benchmarks/bare.py``), warmed with one run of each workflow as
Herald is with one email. All runs share the machine, the server and the process layout
(workers in their own processes), so their ratio is the number to watch.

Each round measures Herald and the baselines back to back, Herald first in odd rounds and
the baselines first in even ones. Each baseline is measured twice in a row: started in
one burst and drained (as Herald's notifications are), and in a closed loop with at most
``--concurrency`` workflows open; its figure is the faster, with that run's CPU.
``--body-kb`` sets the size of the benchmark email (``benchmarks/comparison.py``: 0 is
the short body, 30 an HTML order confirmation of about 30 KB); with a list, Herald is
measured at each size in every round, every figure reported per size
(``herald.body_<N>kb``), the baselines (whose workflows carry no body) once per round.

Prints one JSON object: the body sizes; ``summary``, every rate and ratio over the
rounds as its median, lowest and highest, beside the median CPU ms per item of every
process (the Temporal server, the workers, the API, PostgreSQL, this process with the
sinks as ``client_and_sinks``, the whole ``machine``); the history shapes; every round.

``--eager`` runs Herald with ``HERALD_API_EAGER``: its API also runs an email worker and
starts workflows eagerly (``benchmarks/hot_path.py`` compares it with the default).

``--webhook`` also runs ``herald webhooks`` and measures Herald a second time at each size
with one webhook endpoint (a local receiver answering 200) subscribed to every event:
``with_webhook.ratio`` is that rate over the rate without, from the same round, and
``with_webhook.drain_seconds`` how long from the first submission until the receiver had
the last event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import uuid
from typing import Any

from temporalio.client import Client

from benchmarks.bare import BareLocalWorkflow, BareWorkflow
from benchmarks.comparison import (
    arguments,
    bodies,
    body_label,
    summarize,
    use_herald_body,
)
from benchmarks.environment import BenchHerald, CpuMeter, local_herald, pid_of
from benchmarks.load import LoadGenerator, closed_loop
from benchmarks.webhook import WebhookReceiver, drained, subscribe, unsubscribe
from devtools.devserver import TemporalDevServer
from devtools.histories import shape
from devtools.processes import ManagedProcess
from devtools.sinks import Sinks
from herald.settings import Settings
from herald.temporal import connect


class BaselineWorker:
    """The baselines' worker (``benchmarks/bare.py``, on Herald's runtime): one process for
    the whole benchmark, as Herald's workers are, serving both baseline workflows on one
    task queue, and warmed as Herald is (one run of each workflow) before any measurement.
    Use as an async context manager."""

    client: Client  # connected on entry

    def __init__(self, bench: BenchHerald) -> None:
        self.server = bench.server
        self.settings = bench.settings
        self.queue = f"bare-{uuid.uuid4().hex[:6]}"
        concurrency = str(bench.settings.worker_concurrency)
        self.process = ManagedProcess(
            "bare-worker",
            [sys.executable, "-m", "benchmarks.bare", self.queue, concurrency],
            bench.settings.as_env(),
            bench.work,
        )
        self._started = 0  # workflows started on the queue so far

    async def __aenter__(self) -> BaselineWorker:
        self.process.start()
        self.client = await connect(self.settings)
        for workflow in (BareWorkflow, BareLocalWorkflow):
            await self._run(workflow, f"warm-up-{workflow.__name__}", wait=True)
        await self._all_completed()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.process.stop()

    async def _run(self, workflow: type, workflow_id: str, *, wait: bool) -> None:
        self._started += 1
        run = self.client.execute_workflow if wait else self.client.start_workflow
        await run(
            workflow.run,  # type: ignore[attr-defined]
            workflow_id,
            id=f"{self.queue}-{workflow_id}",
            task_queue=self.queue,
        )

    async def _all_completed(self) -> None:
        """Wait until every workflow started on the queue shows as completed."""
        done = f'TaskQueue="{self.queue}" AND ExecutionStatus="Completed"'
        while (await self.client.count_workflows(done)).count < self._started:
            await asyncio.sleep(0.2)

    async def rate(
        self, workflow: type, count: int, concurrency: int, *, burst: bool
    ) -> tuple[float, dict[str, float]]:
        """Workflows per second for one baseline, and CPU ms per workflow by process.

        ``burst``: start all ``count`` as fast as the server takes them (``concurrency``
        starts at a time), then wait until all have completed: what the Herald run does
        through its API. Otherwise each of ``concurrency`` callers starts one and waits
        for its result before starting the next, so at most ``concurrency`` are ever open.
        """
        run = f"{workflow.__name__}-{'burst' if burst else 'closed'}-{uuid.uuid4().hex[:6]}"
        meter = CpuMeter({"temporal": pid_of(self.server), "worker": pid_of(self.process)}, ())
        started = time.perf_counter()
        await closed_loop(
            count, concurrency, lambda i: self._run(workflow, f"{run}-{i}", wait=not burst)
        )
        if burst:
            await self._all_completed()
        rate = count / (time.perf_counter() - started)
        cpu_ms = meter.per_item(count)
        await self._all_completed()  # the next run starts with none of this one open
        return rate, cpu_ms


async def baseline_figures(
    baselines: BaselineWorker, count: int, concurrency: int
) -> dict[str, dict[str, Any]]:
    """Both baselines, each measured in a burst and in a closed loop (see
    ``BaselineWorker.rate``) and reported at the faster of the two, with that run's CPU."""
    figures = {}
    for name, workflow in (("bare", BareWorkflow), ("bare_local", BareLocalWorkflow)):
        runs = {
            mode: await baselines.rate(workflow, count, concurrency, burst=mode == "burst")
            for mode in ("burst", "closed")
        }
        per_second, cpu_ms = max(runs.values(), key=lambda run: run[0])
        figures[name] = {
            "per_minute": round(per_second * 60),
            "runs_per_minute": {mode: round(run[0] * 60) for mode, run in runs.items()},
            "cpu_ms_per_item": {process: round(ms, 2) for process, ms in cpu_ms.items()},
        }
    return figures


async def history_shapes(server: TemporalDevServer) -> dict[str, dict[str, int]]:
    """Events, workflow tasks and billable actions of one completed run of each kind."""
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
        "cpu_ms_per_item": by_process(cpu_ms),
    }


def by_process(cpu_ms: dict[str, float]) -> dict[str, float]:
    """``LoadGenerator.rate``'s CPU ms per notification, keyed by process alone."""
    return {name.removeprefix("herald."): round(ms, 2) for name, ms in cpu_ms.items()}


async def herald_figures(
    bench: BenchHerald,
    load: LoadGenerator,
    receiver: WebhookReceiver | None,
    count: int,
    kb: int,
) -> dict[str, Any]:
    """One measured run of Herald with bodies of ``kb`` (and one with the webhook
    endpoint, if ``receiver``)."""
    cpu_ms: dict[str, float] = {}
    run = await load.rate(count, bench.pids(), cpu_ms)
    figures: dict[str, Any] = {
        "per_minute": round(run["per_second"] * 60),
        "accept_per_minute": round(run["accept_per_second"] * 60),
        "cpu_ms_per_item": by_process(cpu_ms),
    }
    if receiver is not None:
        hooked = await webhook_rate(bench, load, receiver, count)
        figures["with_webhook"] = {
            "per_minute": round(hooked["per_second"] * 60),
            "ratio": round(hooked["per_second"] / run["per_second"], 3),
            "events": hooked["events"],
            "drain_seconds": hooked["drain_seconds"],
            "cpu_ms_per_item": hooked["cpu_ms_per_item"],
        }
    return figures


async def herald_sizes(
    bench: BenchHerald,
    load: LoadGenerator,
    receiver: WebhookReceiver | None,
    count: int,
    sizes: list[int],
    body: int,
) -> dict[str, dict[str, Any]]:
    """Herald measured at each body size in turn (``herald_figures``), by size; ``body`` is
    the size its template has now."""
    figures = {}
    for kb in sizes:
        if kb != body:
            await use_herald_body(load, kb)
            body = kb
        figures[body_label(kb)] = await herald_figures(bench, load, receiver, count, kb)
    return figures


async def main() -> None:
    """Run the measurements round by round and print them."""
    parser = arguments(__doc__, "workflows")
    parser.add_argument(
        "--webhook", action="store_true", help="also measure with one webhook endpoint"
    )
    parser.add_argument(
        "--eager",
        action="store_true",
        help="Herald with HERALD_API_EAGER (an email worker in the API, eager starts)",
    )
    args = parser.parse_args()

    rounds: list[dict[str, Any]] = []
    overrides: dict[str, Any] = {"webhooks_allow_private": True} if args.webhook else {}
    if args.eager:
        overrides["api_eager"] = True
    async with local_herald("bench", **overrides) as bench, contextlib.AsyncExitStack() as stack:
        await bench.start("api", "core", "email", *(["webhooks"] if args.webhook else []))
        receiver = await stack.enter_async_context(WebhookReceiver()) if args.webhook else None
        load = await stack.enter_async_context(
            LoadGenerator(bench.settings, bench.sinks, args.concurrency)
        )
        baselines = await stack.enter_async_context(BaselineWorker(bench))
        for number in range(args.rounds):
            # Herald first in odd rounds, the baselines first in even ones: each meets the
            # server's tables and the machine's speed as often right after the other.
            herald_first = number % 2 == 0
            if not herald_first:
                baseline = await baseline_figures(baselines, args.count, args.concurrency)
            # LoadGenerator's template starts with the short body; a round ends on the last.
            body = args.body_kb[-1] if number else 0
            herald = await herald_sizes(bench, load, receiver, args.count, args.body_kb, body)
            if herald_first:
                baseline = await baseline_figures(baselines, args.count, args.concurrency)
            for figures in herald.values():
                for name in ("bare", "bare_local"):
                    figures[f"ratio_to_{name}"] = round(
                        figures["per_minute"] / baseline[name]["per_minute"], 3
                    )
            rounds.append(
                {"first": "herald" if herald_first else "baselines"} | baseline | {"herald": herald}
            )
        shapes = await history_shapes(bench.server)
    print(
        json.dumps(
            {
                "notifications": args.count,
                "concurrency": args.concurrency,
                "eager": args.eager,
                "bodies": bodies(args.body_kb),
                # Over the rounds: the median, the lowest and the highest of every figure
                # (the machine's speed drifts within minutes; each round's ratios compare
                # runs taken back to back), and the median CPU per process beside each.
                "summary": summarize(rounds),
                "history_per_run": shapes,
                "rounds": rounds,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
