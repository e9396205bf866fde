"""The inputs of the capacity model in deploy/README.md, measured on this machine.

1. What one notification costs Temporal, read from real workflow histories (a clean send
   and a send whose first attempt fails): history events by type, workflow tasks, state
   transitions and billable actions.
2. What one notification costs each process, in CPU seconds, over N emails end to end
   through the API (API, email worker, and the Temporal dev server), hence
   how many notifications per second one CPU core of each kind of process sustains.

    .venv/bin/python -m benchmarks.capacity [--count 500] [--concurrency 32]

Prints one JSON object. CPU seconds per notification hold up on a busy machine far better
than wall-clock rates do, which is why the model is built on them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import uuid
from collections import Counter
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from benchmarks.environment import local_herald
from benchmarks.throughput import herald_rate
from devtools.histories import shape
from devtools.sinks import Rule, Sinks
from herald.client import AsyncHeraldClient
from herald.contracts import workflow_id_for
from herald.db import make_engine
from herald.settings import Settings
from herald.temporal import connect
from herald.tenants import create_api_key
from tests.harness import TERMINAL


async def history_cost(client: Client, notification_id: str) -> dict[str, Any]:
    """Events, workflow tasks, state transitions and Temporal Cloud actions of one
    notification's workflow (actions counted by ``devtools.histories.shape``)."""
    handle = client.get_workflow_handle(workflow_id_for(notification_id))
    history = await handle.fetch_history()
    kinds = Counter(
        EventType.Name(event.event_type).removeprefix("EVENT_TYPE_") for event in history.events
    )
    cost = shape(history)
    info = (await handle.describe()).raw_description.workflow_execution_info
    return {
        "history_events": cost.events,
        "workflow_tasks": cost.workflow_tasks,
        "state_transitions": info.state_transition_count,
        "activity_attempts": sum(
            max(e.activity_task_started_event_attributes.attempt, 1)
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        ),
        "local_activities": kinds["MARKER_RECORDED"],
        "actions": cost.actions,
        "events_by_type": dict(sorted(kinds.items())),
    }


async def sample_histories(settings: Settings, sinks: Sinks) -> dict[str, Any]:
    """Send one clean email and one whose first attempt fails; return both costs."""
    engine = make_engine(settings, pool_size=1)
    key = await create_api_key(engine, f"capacity-{uuid.uuid4().hex[:6]}")
    await engine.dispose()
    async with AsyncHeraldClient(f"http://127.0.0.1:{settings.api_port}", key) as api:
        template = {"key": "capacity", "channel": "email", "subject": "Hi", "body": "<p>Hi</p>"}
        await api.create_template(template)
        ids: dict[str, str] = {}
        for case in ("clean", "retried_once"):
            user = {"id": f"capacity-{case}", "email": f"capacity-{case}@example.com"}
            await api.create_user(user)
            if case == "retried_once":
                sinks.state.add_rule(Rule(match=user["email"], fail_with=["transient"]))
            body = {"channel": "email", "user_id": user["id"], "template": "capacity"}
            ids[case] = str((await api.send(body)).id)
        for notification_id in ids.values():
            while (await api.get_notification(notification_id)).status not in TERMINAL:
                await asyncio.sleep(0.2)
    client = await connect(settings)
    return {case: await history_cost(client, nid) for case, nid in ids.items()}


async def main() -> None:
    """Measure and print the capacity model inputs."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    cpu_ms: dict[str, float] = {}
    async with local_herald("capacity", retry_initial_interval_seconds=0.2) as bench:
        await bench.start("api", "core", "email")
        rate = await herald_rate(
            bench.settings, args.count, args.concurrency, bench.sinks, bench.pids(), cpu_ms
        )
        # After the rate run, which counts every row and message as its own.
        histories = await sample_histories(bench.settings, bench.sinks)

    names = {"core": "worker-core", "email": "worker-email", "temporal": "temporal-dev-server"}
    per_notification = {
        names.get(name, name): ms / 1000
        for name, ms in ((key.removeprefix("herald."), ms) for key, ms in cpu_ms.items())
    }
    print(
        json.dumps(
            {
                "notifications": args.count,
                "concurrency": args.concurrency,
                "cores": os.cpu_count(),
                "end_to_end_per_minute": round(rate["per_second"] * 60),
                "cpu_ms_per_notification": {
                    name: round(seconds * 1000, 2) for name, seconds in per_notification.items()
                },
                "per_core_notifications_per_second": {
                    name: round(1 / seconds)
                    for name, seconds in per_notification.items()
                    if seconds > 0
                },
                "temporal_per_notification": histories,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
