"""Herald next to the design a plain queue would use (``benchmarks/peer``): the same emails,
the same load generator, the same SMTP sink, PostgreSQL and RabbitMQ, on the same machine
in the same run.

    .venv/bin/python -m benchmarks.peer_queue [--count 1000] [--concurrency 32] \\
        [--rounds 3] [--body-kb 0,30]

Each round measures both, one right after the other (Herald first in odd rounds, the
plain queue first in even ones): ``--count`` emails submitted by ``--concurrency`` callers
in a closed loop, timed from the first submission to the last email recorded as sent,
every one of which must have reached the SMTP sink. ``--body-kb`` sets the size of the
email (``benchmarks/comparison.py``: 0 is the short body, 30 an HTML order confirmation
of about 30 KB): Herald renders it from its template, the plain queue is sent the same
HTML; with a list, both are measured at each size in every round, side by side
(``body_<N>kb``).

Prints one JSON object: the body sizes; ``summary``, over the rounds, every rate and ratio
as its median, lowest and highest, beside the median CPU ms per email of the whole
machine and of each process (PostgreSQL, RabbitMQ's beam.smp, the Temporal server, the
API, the workers or the consumer; idle ones included, they share the machine); then every
round: per size and system, emails per minute and the CPU breakdown, Herald's ratio to the
plain queue and the ratio of their machine CPU per email.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from benchmarks.comparison import (
    arguments,
    bodies,
    body_label,
    rendered,
    summarize,
    use_herald_body,
    warm,
)
from benchmarks.environment import local_herald
from benchmarks.load import RECIPIENT, EmailService, LoadGenerator, measure
from benchmarks.peer.environment import PeerQueue, local_peer

SERVERS = ("postgres", "rabbitmq")


class PlainQueueEmails:
    """The plain queue's client, sending the email Herald renders at one body size."""

    def __init__(self, peer: PeerQueue, kb: int) -> None:
        self.peer = peer
        self.kb = kb

    async def submit(self, n: int) -> None:
        """Submit email number ``n`` (202)."""
        subject, html = rendered(self.kb, n)
        await self.peer.callers.post(
            "/emails", {"to": RECIPIENT, "subject": subject, "html": html}, 202
        )

    async def sent(self) -> int:
        """How many emails the service has marked ``sent``."""
        return await self.peer.sent()


async def main() -> None:
    """Set up both systems, measure them round by round, print."""
    parser = arguments(__doc__, "emails")
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
            body = 0  # the size both start with (and were warmed with)
            for number in range(args.rounds):
                order = ["herald", "plain_queue"] if number % 2 == 0 else ["plain_queue", "herald"]
                result: dict[str, Any] = {"first": order[0]}
                for kb in args.body_kb:
                    systems: dict[str, EmailService] = {
                        "herald": herald,
                        "plain_queue": PlainQueueEmails(peer, kb),
                    }
                    if kb != body:
                        await use_herald_body(herald, kb)
                        await warm(systems["plain_queue"])
                        body = kb
                    figures: dict[str, Any] = {}
                    for name in order:
                        run = await measure(
                            systems[name], bench.sinks, args.count, args.concurrency, pids, SERVERS
                        )
                        figures[name] = {
                            "per_minute": round(run.per_second * 60),
                            "cpu_ms_per_email": {k: round(ms, 2) for k, ms in run.cpu_ms.items()},
                        }
                    herald_run, peer_run = figures["herald"], figures["plain_queue"]
                    figures["ratio"] = round(herald_run["per_minute"] / peer_run["per_minute"], 3)
                    figures["machine_cpu_ratio"] = round(
                        herald_run["cpu_ms_per_email"]["machine"]
                        / peer_run["cpu_ms_per_email"]["machine"],
                        3,
                    )
                    result[body_label(kb)] = figures
                rounds.append(result)
    print(
        json.dumps(
            {
                "emails": args.count,
                "concurrency": args.concurrency,
                "bodies": bodies(args.body_kb),
                "summary": summarize(rounds),
                "rounds": rounds,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
