"""The inputs of the capacity model in deploy/README.md, measured on this machine.

1. What one notification costs Temporal, read from real workflow histories (a clean send
   and a send whose first attempt fails): history events by type, workflow tasks, state
   transitions and billable actions.
2. What one notification costs each process, in CPU seconds, over N emails end to end
   through the API (API, core worker, email worker, and the Temporal dev server), hence
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
import tempfile
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from benchmarks.throughput import herald_rate
from herald.contracts import workflow_id_for
from herald.db import make_engine
from herald.devserver import TemporalDevServer, free_port
from herald.migrate import ensure_database, upgrade
from herald.processes import ManagedProcess, herald_argv, wait_http
from herald.settings import Settings
from herald.sinks import Rule, Sinks
from herald.temporal import connect
from herald.tenants import create_api_key
from tests.harness import TERMINAL

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


async def history_cost(client: Client, notification_id: str) -> dict[str, Any]:
    """Events, workflow tasks, state transitions and Temporal Cloud actions of one
    notification's workflow.

    Actions as Temporal Cloud bills them: the start, each activity attempt, each signal,
    each search-attribute upsert, each timer, and the local activities of one workflow
    task together as one.
    """
    handle = client.get_workflow_handle(workflow_id_for(notification_id))
    history = await handle.fetch_history()
    kinds = Counter(
        EventType.Name(event.event_type).removeprefix("EVENT_TYPE_") for event in history.events
    )
    attempts = sum(
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    )
    tasks_with_local_activities = 0
    marker_seen = False
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            marker_seen = False
        elif event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED and not marker_seen:
            marker_seen = True
            tasks_with_local_activities += 1
    actions = (
        kinds["WORKFLOW_EXECUTION_STARTED"]
        + attempts
        + kinds["WORKFLOW_EXECUTION_SIGNALED"]
        + kinds["UPSERT_WORKFLOW_SEARCH_ATTRIBUTES"]
        + kinds["TIMER_STARTED"]
        + tasks_with_local_activities
    )
    info = (await handle.describe()).raw_description.workflow_execution_info
    return {
        "history_events": len(history.events),
        "workflow_tasks": kinds["WORKFLOW_TASK_COMPLETED"],
        "state_transitions": info.state_transition_count,
        "activity_attempts": attempts,
        "local_activities": kinds["MARKER_RECORDED"],
        "actions": actions,
        "events_by_type": dict(sorted(kinds.items())),
    }


async def sample_histories(settings: Settings, sinks: Sinks) -> dict[str, Any]:
    """Send one clean email and one whose first attempt fails; return both costs."""
    engine = make_engine(settings, pool_size=1)
    key = await create_api_key(engine, f"capacity-{uuid.uuid4().hex[:6]}")
    await engine.dispose()
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{settings.api_port}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as api:
        template = {"key": "capacity", "channel": "email", "subject": "Hi", "body": "<p>Hi</p>"}
        assert (await api.post("/v1/templates", json=template)).status_code == 201
        ids: dict[str, str] = {}
        for case in ("clean", "retried_once"):
            user = {"id": f"capacity-{case}", "email": f"capacity-{case}@example.com"}
            assert (await api.post("/v1/users", json=user)).status_code == 201
            if case == "retried_once":
                sinks.state.add_rule(Rule(match=user["email"], fail_with=["transient"]))
            body = {"user_id": user["id"], "template": "capacity"}
            ids[case] = (await api.post("/v1/notifications/email", json=body)).json()["id"]
        for notification_id in ids.values():
            while (await api.get(f"/v1/notifications/{notification_id}")).json()[
                "status"
            ] not in TERMINAL:
                await asyncio.sleep(0.2)
    client = await connect(settings)
    return {case: await history_cost(client, nid) for case, nid in ids.items()}


async def main() -> None:
    """Measure and print the capacity model inputs."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="herald-capacity-"))
    server = TemporalDevServer(work / "temporal.db", port=free_port(), headless=True).start()
    sinks = Sinks(smtp_port=free_port(), http_port=free_port()).start()
    run = uuid.uuid4().hex[:6]
    settings = Settings(
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:5432/herald_capacity_{run}",
        temporal_address=server.address,
        task_queue_prefix=f"capacity-{run}",
        api_port=free_port(),
        smtp_port=sinks.smtp_port,
        retry_initial_interval_seconds=0.2,
        log_level="WARNING",
    )
    await ensure_database(settings.database_url)
    await asyncio.to_thread(upgrade, settings.database_url)
    env = settings.as_env()
    processes = {
        name: ManagedProcess(name, herald_argv(*argv), env, work)
        for name, argv in {
            "api": ("api",),
            "worker-core": ("worker", "--queue", "core"),
            "worker-email": ("worker", "--queue", "email"),
        }.items()
    }
    try:
        for process in processes.values():
            process.start()
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{settings.api_port}/healthz")
        pids = {name: p.process.pid for name, p in processes.items() if p.process is not None}
        assert server.process is not None
        pids["temporal-dev-server"] = server.process.pid
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        rate = await herald_rate(settings, args.count, args.concurrency, sinks)
        used = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
        # After the rate run, which counts every row and message as its own.
        histories = await sample_histories(settings, sinks)
    finally:
        for process in processes.values():
            process.stop()
        sinks.stop()
        server.stop()

    per_notification = {name: seconds / args.count for name, seconds in used.items()}
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
                    name: round(1 / seconds) for name, seconds in per_notification.items()
                },
                "temporal_per_notification": histories,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
