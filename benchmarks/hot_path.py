"""The hot path's settings, measured in one run: N emails through the real API, workers,
Temporal and an SMTP server, under each variant of Herald's settings in turn.

    .venv/bin/python -m benchmarks.hot_path [--count 1000] [--concurrency 32] \\
        [--rounds 3] [--body-kb 0] [--variants default,eager,...]

A variant is extra environment for the API and the email worker (``VARIANTS``):

- ``default``: the settings as shipped;
- ``eager``: ``HERALD_API_EAGER=1``, the API runs an email worker and starts workflows
  with ``request_eager_start``; the email worker process runs beside it as in a
  deployment (it takes what is not started eagerly, and retries);
- ``eager_alone``: the same without the email worker process, so every notification is
  the API's (the eager path alone, at the same process count as the default);
- ``polls_5_ratio_1``: 5 workflow-task polls, all on the channel's queue (the SDK's
  minimum of one stays on the sticky queue);
- ``polls_8_ratio_0_5``: 8 workflow-task polls, half on the channel's queue.

One Temporal dev server, database and core worker serve the whole run. Every round
measures each variant once, the order turned by one each round; a variant's API and email
worker are started for its measurement (and warmed with one email) and stopped after it.

Prints one JSON object: ``summary``, each variant's rate over the rounds as its median,
lowest and highest, beside the median CPU ms per item of every process (see
``benchmarks/throughput.py``), each variant's ratio to ``default`` in the same round, and
every round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from sqlalchemy import func, select

from benchmarks.comparison import arguments, bodies, summarize, use_herald_body
from benchmarks.environment import COMMANDS, BenchHerald, local_herald, until_none
from benchmarks.load import LoadGenerator
from devtools.processes import ManagedProcess, herald_argv, wait_http
from herald.db import Notification
from herald.settings import Settings

# Each variant's environment on top of the benchmark's settings, and whether the email
# worker process runs.
VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    "eager": {"HERALD_API_EAGER": "true"},
    "eager_alone": {"HERALD_API_EAGER": "true"},
    "polls_5_ratio_1": {
        "HERALD_WORKER_WORKFLOW_TASK_POLLS": "5",
        "HERALD_WORKER_NONSTICKY_POLL_RATIO": "1.0",
    },
    "polls_8_ratio_0_5": {
        "HERALD_WORKER_WORKFLOW_TASK_POLLS": "8",
        "HERALD_WORKER_NONSTICKY_POLL_RATIO": "0.5",
    },
}
WITHOUT_EMAIL_WORKER = {"eager_alone"}
BASELINE = "default"
SETTLED = ("sent", "delivered", "failed", "cancelled", "suppressed")


def variant_names(value: str) -> list[str]:
    """``--variants``: comma-separated names of ``VARIANTS`` (``default`` always runs)."""
    names = [part for part in value.split(",") if part]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown variants {unknown}; expected some of {', '.join(VARIANTS)}"
        )
    return [BASELINE, *(name for name in names if name != BASELINE)]


async def start_variant(bench: BenchHerald, variant: str) -> list[str]:
    """Start the API and (unless the variant runs without it) the email worker with the
    variant's environment; returns the names of the processes started."""
    env = bench.settings.as_env() | VARIANTS[variant]
    names = ["api"] if variant in WITHOUT_EMAIL_WORKER else ["api", "email"]
    for name in names:
        process = ManagedProcess(f"{name}-{variant}", herald_argv(*COMMANDS[name]), env, bench.work)
        bench.processes[name] = process.start()
    await asyncio.to_thread(wait_http, f"http://127.0.0.1:{bench.settings.api_port}/healthz")
    return names


async def measure_variant(
    bench: BenchHerald, variant: str, count: int, concurrency: int, kb: int
) -> dict[str, Any]:
    """One measured run of ``count`` emails under ``variant``, on processes of its own."""
    started = await start_variant(bench, variant)
    try:
        async with LoadGenerator(bench.settings, bench.sinks, concurrency) as load:
            # Its warm-up email (one per LoadGenerator) goes through the new processes; no
            # straggler of it may count in the run.
            await all_settled(bench.settings)
            if kb:
                await use_herald_body(load, kb)
            cpu_ms: dict[str, float] = {}
            run = await load.rate(count, bench.pids(), cpu_ms)
    finally:
        await bench.stop(*started)
    return {
        "per_minute": round(run["per_second"] * 60),
        "accept_per_minute": round(run["accept_per_second"] * 60),
        "cpu_ms_per_item": {
            name.removeprefix("herald."): round(ms, 2) for name, ms in cpu_ms.items()
        },
    }


async def all_settled(settings: Settings) -> None:
    """Wait until every notification submitted so far has come to an end."""
    unsettled = select(func.count()).where(Notification.status.not_in(SETTLED))
    await until_none(settings, unsettled, 0.1)


async def main() -> None:
    """Measure every variant round by round and print the figures."""
    parser = arguments(__doc__, "emails")
    parser.add_argument(
        "--variants",
        type=variant_names,
        default=list(VARIANTS),
        help=f"comma-separated, of: {', '.join(VARIANTS)} (default: all)",
    )
    args = parser.parse_args()
    if len(args.body_kb) != 1:
        parser.error("--body-kb takes one size here")
    kb = args.body_kb[0]

    rounds: list[dict[str, Any]] = []
    orders: list[list[str]] = []
    async with local_herald("hotpath") as bench:
        await bench.start("core")
        for number in range(args.rounds):
            turn = number % len(args.variants)
            order = args.variants[turn:] + args.variants[:turn]
            figures = {
                variant: await measure_variant(bench, variant, args.count, args.concurrency, kb)
                for variant in order
            }
            base = figures[BASELINE]["per_minute"]
            for variant in args.variants:
                figures[variant]["ratio_to_default"] = round(
                    figures[variant]["per_minute"] / base, 3
                )
            orders.append(order)
            # Figures keyed in one order in every round, for ``summarize``.
            rounds.append({variant: figures[variant] for variant in args.variants})
    print(
        json.dumps(
            {
                "notifications": args.count,
                "concurrency": args.concurrency,
                "bodies": bodies([kb]),
                "variants": {
                    name: {"env": VARIANTS[name], "email_worker": name not in WITHOUT_EMAIL_WORKER}
                    for name in args.variants
                },
                "summary": summarize(rounds),
                "rounds": [
                    {"order": order} | figures
                    for order, figures in zip(orders, rounds, strict=True)
                ],
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
