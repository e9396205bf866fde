"""Herald next to the design a plain queue would use (``benchmarks/peer``): the same emails,
the same load generator, the same SMTP sink, PostgreSQL and RabbitMQ, on the same machine
in the same run.

    .venv/bin/python -m benchmarks.peer_queue [--count 1000] [--concurrency 32] [--rounds 1]

Each round measures both, one right after the other (Herald first in odd rounds, the
plain queue first in even ones): ``--count`` emails submitted by ``--concurrency`` callers
in a closed loop, timed from the first submission to the last email recorded as sent,
every one of which must have reached the SMTP sink. Prints one JSON object: per round and
system, emails per minute and CPU ms per email for the whole machine and per process
(PostgreSQL, RabbitMQ's beam.smp, the Temporal server, the API, the workers or the
consumer; idle ones included, they share the machine), and Herald's ratio to the plain
queue; then the medians over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from typing import Any

from benchmarks.environment import local_herald
from benchmarks.load import EmailService, LoadGenerator, measure
from benchmarks.peer.environment import local_peer

SERVERS = ("postgres", "rabbitmq")


async def main() -> None:
    """Set up both systems, measure them round by round, print."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()

    rounds: list[dict[str, Any]] = []
    async with local_herald("peer") as bench:
        await bench.start("api", "core", "email")
        async with (
            LoadGenerator(bench.settings, bench.sinks, args.concurrency) as herald,
            local_peer(bench.sinks.smtp_port, bench.work, args.concurrency) as peer,
        ):
            # Every process either system runs, metered during both systems' runs.
            pids = {f"herald_{name}": pid for name, pid in bench.pids().items()}
            pids |= {f"peer_{name}": pid for name, pid in peer.pids().items()}
            systems: dict[str, EmailService] = {"herald": herald, "plain_queue": peer}
            for number in range(args.rounds):
                order = list(systems) if number % 2 == 0 else list(reversed(systems))
                result: dict[str, Any] = {"first": order[0]}
                for name in order:
                    run = await measure(
                        systems[name], bench.sinks, args.count, args.concurrency, pids, SERVERS
                    )
                    result[name] = {
                        "per_minute": round(run.per_second * 60),
                        "cpu_ms_per_email": {k: round(ms, 2) for k, ms in run.cpu_ms.items()},
                    }
                herald_run, peer_run = result["herald"], result["plain_queue"]
                result["ratio"] = round(herald_run["per_minute"] / peer_run["per_minute"], 3)
                result["machine_cpu_ratio"] = round(
                    herald_run["cpu_ms_per_email"]["machine"]
                    / peer_run["cpu_ms_per_email"]["machine"],
                    3,
                )
                rounds.append(result)
    print(
        json.dumps(
            {
                "emails": args.count,
                "concurrency": args.concurrency,
                "median": {
                    "herald_per_minute": statistics.median(
                        r["herald"]["per_minute"] for r in rounds
                    ),
                    "plain_queue_per_minute": statistics.median(
                        r["plain_queue"]["per_minute"] for r in rounds
                    ),
                    "ratio": statistics.median(r["ratio"] for r in rounds),
                    "machine_cpu_ratio": statistics.median(r["machine_cpu_ratio"] for r in rounds),
                },
                "rounds": rounds,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
