"""Whether a channel scales by starting more of its workers: N emails through a provider
that takes 200 ms per message, with one email worker and then with two, on one Herald.

    .venv/bin/python -m benchmarks.scaling [--count 400] [--concurrency 2] [--delay 0.2]

Each email worker runs ``--concurrency`` sends at once over as many kept-open SMTP
connections, so one worker sends at most ``concurrency / delay`` emails a second. That
must stay well below what the machine's CPU sustains end to end (about 30-40 a second on
two cores, ``benchmarks.throughput``) even with two workers, or the CPU and not the
provider is the limit and the second worker cannot help: hence 2 by default (10 and 20 a
second). Prints one JSON object: the rate with each number of workers, how many cores
the machine kept busy meanwhile (near all of them: CPU-bound), and the ratio (2.0 is
perfect scaling).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os

from benchmarks.environment import local_herald
from benchmarks.load import RECIPIENT, LoadGenerator
from devtools.sinks import Rule


async def main() -> None:
    """Measure with one email worker, start a second one, measure again, print."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=2, help="sends per email worker")
    parser.add_argument("--delay", type=float, default=0.2, help="provider seconds per email")
    parser.add_argument("--callers", type=int, default=32, help="API callers (closed loop)")
    args = parser.parse_args()

    runs: dict[int, dict[str, float]] = {}
    # As many SMTP connections as sends at once: the pool must not be the limit either.
    async with local_herald("scaling", smtp_pool_size=args.concurrency) as bench:
        # Only the benchmark's own recipient is slowed, the sink itself is shared code.
        bench.sinks.state.add_rule(Rule(match=RECIPIENT.partition("@")[2], delay=args.delay))
        await bench.start("api", "core")
        await bench.start("email-1", concurrency=args.concurrency)
        async with LoadGenerator(bench.settings, bench.sinks, args.callers) as load:
            for workers in (1, 2):
                if workers == 2:
                    await bench.start("email-2", concurrency=args.concurrency)
                await bench.wait_pollers("email", workers)
                cpu_ms: dict[str, float] = {}
                per_second = (await load.rate(args.count, bench.pids(), cpu_ms))["per_second"]
                runs[workers] = {
                    "per_minute": round(per_second * 60),
                    # Near the number of cores, the CPU and not the provider was the limit.
                    "machine_cores_busy": round(cpu_ms["herald.machine"] / 1000 * per_second, 2),
                }
    print(
        json.dumps(
            {
                "emails": args.count,
                "provider_seconds_per_email": args.delay,
                "concurrency_per_worker": args.concurrency,
                "provider_bound_per_minute_per_worker": round(args.concurrency / args.delay * 60),
                "cores": os.cpu_count(),
                "one_worker": runs[1],
                "two_workers": runs[2],
                "ratio": round(runs[2]["per_minute"] / runs[1]["per_minute"], 2),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
