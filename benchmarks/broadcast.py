"""One broadcast to a large topic through a Herald of its own: how fast it fans out, how
fast its emails reach the SMTP server next to single notifications in the same run, and
the memory of every process as the audience grows.

    .venv/bin/python -m benchmarks.broadcast [--recipients 100000] [--rate 1000]
        [--single 500] [--checkpoints 10%,50%,100%]

The API, a core and an email worker, on a file-backed Temporal dev server. First
``--single`` emails are sent one request each (``LoadGenerator``), for the rate to
compare with. Then ``--recipients`` users with an email address are written, subscribed
to one topic through ``POST /v1/topics/{key}/subscribers`` (10,000 per call), and one
broadcast to the topic is asked for at ``--rate`` recipients per second. Its progress
is read from ``GET /v1/broadcasts/{id}`` every ``--interval`` seconds.

Prints one JSON object:

- ``fan_out``: notifications started per second, from the broadcast's acceptance to the
  last recipient started, and between the first and the last checkpoint;
- ``end_to_end``: emails sent per second, from acceptance to the last one sent, next to
  the single-notification rate (``ratio_to_single``);
- ``memory``: for every Herald process (and the Temporal server) its resident set now
  (``rss_mb``, VmRSS) and the highest it has been since it started (``peak_mb``,
  VmHWM), taken before the broadcast, when each checkpoint of recipients was started,
  and when the last email was sent. Fan-out reads one page of the audience at a time,
  so the peaks at 10% and at 100% should be alike whatever the audience's size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import insert

from benchmarks.environment import BenchHerald, local_herald
from benchmarks.load import LoadGenerator, delivered_emails
from herald.db import User, make_engine
from herald.tenants import ensure_tenant, issue_api_key

TOPIC = "bench-audience"
# The most user ids one subscribe call takes (``POST /v1/topics/{key}/subscribers``).
SUBSCRIBE_CHUNK = 10_000
# Users are written straight to PostgreSQL: creating them is set-up, not what is measured.
USER_CHUNK = 10_000


def user_id(n: int) -> str:
    """Recipient number ``n``'s id: zero-padded so that id order is number order."""
    return f"r{n:07d}"


def memory_of(pid: int | None) -> dict[str, float] | None:
    """A process's resident set now and at its highest (MiB), from ``/proc/<pid>/status``;
    None once it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    return {
        "rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
        "peak_mb": round(int(fields["VmHWM"].split()[0]) / 1024, 1),
    }


def memory(pids: dict[str, int | None]) -> dict[str, dict[str, float] | None]:
    """``memory_of`` for every process, by name."""
    return {name: memory_of(pid) for name, pid in pids.items()}


def parse_checkpoints(spec: str, recipients: int) -> list[int]:
    """``10000,50%,100%`` → recipients started at which memory is read, ascending; counts
    above the audience's size are left out."""
    points = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        count = round(recipients * float(part[:-1]) / 100) if part.endswith("%") else int(part)
        if 0 < count <= recipients:
            points.add(count)
    return sorted(points | {recipients})


@dataclass
class Progress:
    """The broadcast's counts over time, in seconds since its acceptance."""

    samples: list[dict[str, Any]] = field(default_factory=list)

    def when(self, key: str, count: int) -> float | None:
        """The first time ``key`` reached ``count``."""
        return next((s["t"] for s in self.samples if s[key] >= count), None)

    def timeline(self, points: int = 20) -> list[dict[str, Any]]:
        """At most ``points`` samples, evenly spread, the last one included."""
        step = max(1, len(self.samples) // points)
        picked = self.samples[::step]
        if picked[-1] is not self.samples[-1]:
            picked.append(self.samples[-1])
        return picked


async def add_audience(bench: BenchHerald, session_key: str, tenant_id: uuid.UUID, n: int) -> None:
    """``n`` users with an email address, all subscribed to ``TOPIC`` through the API."""
    engine = make_engine(bench.settings, pool_size=1)
    try:
        async with engine.begin() as conn:
            for first in range(0, n, USER_CHUNK):
                await conn.execute(
                    insert(User),
                    [
                        {
                            "tenant_id": tenant_id,
                            "id": user_id(i),
                            "email": f"{user_id(i)}@herald-bench.example",
                        }
                        for i in range(first, min(n, first + USER_CHUNK))
                    ],
                )
    finally:
        await engine.dispose()
    async with api_session(bench, session_key) as api:
        async with api.put(f"/v1/topics/{TOPIC}", json={"name": "benchmark audience"}) as answer:
            assert answer.status == 201, await answer.text()
        for first in range(0, n, SUBSCRIBE_CHUNK):
            ids = [user_id(i) for i in range(first, min(n, first + SUBSCRIBE_CHUNK))]
            async with api.post(
                f"/v1/topics/{TOPIC}/subscribers", json={"user_ids": ids}
            ) as answer:
                assert answer.status == 200, await answer.text()
                assert (await answer.json())["added"] == len(ids)


def api_session(bench: BenchHerald, key: str) -> aiohttp.ClientSession:
    """A client of the benchmark's API with ``key``."""
    return aiohttp.ClientSession(
        base_url=f"http://127.0.0.1:{bench.settings.api_port}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=aiohttp.ClientTimeout(total=120),
    )


async def run_broadcast(
    bench: BenchHerald,
    key: str,
    recipients: int,
    rate: float,
    checkpoints: list[int],
    interval: float,
) -> dict[str, Any]:
    """Ask for the broadcast and follow it to its last email, reading memory on the way."""
    pids = bench.pids()
    readings: dict[str, Any] = {"before_broadcast": memory(pids)}
    progress = Progress()
    pending = list(checkpoints)
    delivered = delivered_emails(bench.sinks)
    body = {
        "channel": "email",
        "template": "bench",
        "data": {"n": 0},
        "audience": {"topic": TOPIC},
        "rate_per_second": rate,
    }
    async with api_session(bench, key) as api:
        started_at = time.perf_counter()
        async with api.post("/v1/broadcasts", json=body) as answer:
            assert answer.status == 202, await answer.text()
            broadcast_id = (await answer.json())["id"]
        accepted = time.perf_counter() - started_at
        while True:
            async with api.get(f"/v1/broadcasts/{broadcast_id}") as answer:
                assert answer.status == 200, await answer.text()
                state = await answer.json()
            now = time.perf_counter() - started_at
            sample = {
                "t": round(now, 2),
                "started": state["started"],
                "sent": state["sent"],
                "failed": state["failed"],
                "suppressed": state["suppressed"],
            }
            progress.samples.append(sample)
            while pending and state["started"] >= pending[0]:
                readings[f"started_{pending.pop(0)}"] = memory(pids)
            ended = state["sent"] + state["failed"] + state["suppressed"]
            if state["status"] != "running" and ended >= state["total"]:
                readings["all_sent"] = memory(pids)
                break
            await asyncio.sleep(interval)
    assert state["status"] == "completed", state
    assert state["total"] == recipients, state
    assert state["sent"] == recipients, state
    arrived = delivered_emails(bench.sinks) - delivered
    assert arrived == recipients, f"{arrived} of {recipients} emails reached the SMTP server"

    all_started = progress.when("started", recipients)
    all_sent = progress.when("sent", recipients)
    assert all_started is not None and all_sent is not None
    first, last = checkpoints[0], checkpoints[-1]
    first_at, last_at = progress.when("started", first), progress.when("started", last)
    steady = (
        (last - first) / (last_at - first_at)
        if first_at is not None and last_at is not None and last_at > first_at
        else None
    )
    return {
        "broadcast_id": broadcast_id,
        "accept_seconds": round(accepted, 3),
        "fan_out": {
            "seconds": all_started,
            "per_second": round(recipients / all_started, 1),
            f"per_second_from_{first}_to_{last}": round(steady, 1) if steady else None,
        },
        "end_to_end": {"seconds": all_sent, "per_second": round(recipients / all_sent, 1)},
        "memory": readings,
        "timeline": progress.timeline(),
    }


async def main() -> None:
    """Measure the single-notification rate, then the broadcast, and print the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=1000.0, help="broadcast rate_per_second")
    parser.add_argument("--single", type=int, default=500, help="single emails for the baseline")
    parser.add_argument("--concurrency", type=int, default=32, help="single-email callers")
    parser.add_argument(
        "--checkpoints",
        default="10%,50%,100%",
        help="recipients started (counts or percentages) at which memory is read",
    )
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between GETs")
    args = parser.parse_args()
    checkpoints = parse_checkpoints(args.checkpoints, args.recipients)

    async with local_herald("bcast") as bench:
        await bench.start("api", "core", "email")
        async with LoadGenerator(bench.settings, bench.sinks, args.concurrency) as load:
            single = await load.rate(args.single, bench.pids(), {})

        engine = make_engine(bench.settings, pool_size=1)
        try:
            tenant = await ensure_tenant(engine, f"bcast-{uuid.uuid4().hex[:6]}")
            key, _ = await issue_api_key(engine, tenant.id)
        finally:
            await engine.dispose()
        setup_started = time.perf_counter()
        await add_audience(bench, key, tenant.id, args.recipients)
        setup_seconds = time.perf_counter() - setup_started
        async with api_session(bench, key) as api:
            template = {
                "key": "bench",
                "channel": "email",
                "subject": "News {{ n }}",
                "body": "<p>News {{ n }}</p>",
            }
            async with api.post("/v1/templates", json=template) as answer:
                assert answer.status == 201, await answer.text()
        broadcast = await run_broadcast(
            bench, key, args.recipients, args.rate, checkpoints, args.interval
        )

    single_rate = single["per_second"]
    broadcast["end_to_end"]["single_per_second"] = round(single_rate, 1)
    broadcast["end_to_end"]["ratio_to_single"] = round(
        broadcast["end_to_end"]["per_second"] / single_rate, 3
    )
    print(
        json.dumps(
            {
                "recipients": args.recipients,
                "rate_per_second": args.rate,
                "single_notifications": args.single,
                "audience_setup_seconds": round(setup_seconds, 1),
                "checkpoints": checkpoints,
                **broadcast,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
