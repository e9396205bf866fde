"""A two-send flow triggered for N recipients next to N single notifications, through a
Herald of its own: how fast runs finish, how fast their emails reach the SMTP server,
and what each costs Temporal.

    .venv/bin/python -m benchmarks.flows [--recipients 200] [--single 200]
        [--concurrency 32] [--interval 0.5]

The API, a core and an email worker, on a file-backed Temporal dev server. First
``--single`` emails are sent one request each (``LoadGenerator``), for the rate to
compare with. Then ``--recipients`` users with an email address are written, a flow of
two email sends (``send`` → ``send``) is saved, and triggered for all of them in
``POST /v1/flows/{key}/trigger`` calls of up to 1,000 recipients. The runs' rows are read
from PostgreSQL every ``--interval`` seconds until each has ended.

Prints one JSON object:

- ``flow``: runs completed per second and emails reaching the SMTP server per second,
  each from the first trigger call to the last run completed (the last email), and
  ``trigger_seconds`` for the calls themselves;
- ``single``: the single-notification emails per second of the same Herald;
- ``ratio_emails_flow_to_single``: flow emails per second over single emails per second;
- ``temporal``: the events, workflow tasks and billable actions (``devtools.histories``)
  of one completed ``FlowRun``, of one single notification's ``NotificationWorkflow``,
  and per flow run all told (its ``FlowRun`` and the two notifications it started),
  with that over two single sends as ``ratio_actions_flow_to_two_singles``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from typing import Any

import aiohttp
from sqlalchemy import func, insert, select
from temporalio.client import Client

from benchmarks.environment import BenchHerald, local_herald
from benchmarks.load import LoadGenerator, delivered_emails
from devtools.histories import shape
from herald.client import AsyncHeraldClient
from herald.contracts import workflow_id_for
from herald.db import FlowRun, User, make_engine
from herald.flows.models import run_workflow_id, step_notification_id
from herald.temporal import connect
from herald.tenants import ensure_tenant, issue_api_key

FLOW = "bench-two-sends"
TRIGGER_CHUNK = 1000  # the most recipients one trigger takes
STEPS = [
    {"id": "welcome", "type": "send", "channel": "email", "template": "bench"},
    {"id": "follow-up", "type": "send", "channel": "email", "template": "bench"},
]


def user_id(n: int) -> str:
    """Recipient number ``n``'s id."""
    return f"f{n:07d}"


def api_session(bench: BenchHerald, key: str) -> aiohttp.ClientSession:
    """A client of the benchmark's API with ``key``."""
    return aiohttp.ClientSession(
        base_url=f"http://127.0.0.1:{bench.settings.api_port}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=aiohttp.ClientTimeout(total=120),
    )


async def set_up(bench: BenchHerald, recipients: int) -> tuple[str, uuid.UUID]:
    """A tenant with ``recipients`` users, the email template and the flow; its key."""
    engine = make_engine(bench.settings, pool_size=1)
    try:
        tenant = await ensure_tenant(engine, f"flows-{uuid.uuid4().hex[:6]}")
        key, _ = await issue_api_key(engine, tenant.id)
        async with engine.begin() as conn:
            await conn.execute(
                insert(User),
                [
                    {
                        "tenant_id": tenant.id,
                        "id": user_id(i),
                        "email": f"{user_id(i)}@herald-bench.example",
                    }
                    for i in range(recipients)
                ],
            )
    finally:
        await engine.dispose()
    async with AsyncHeraldClient(f"http://127.0.0.1:{bench.settings.api_port}", key) as api:
        template = {
            "key": "bench",
            "channel": "email",
            "subject": "Step {{ n }}",
            "body": "<p>Step {{ n }}</p>",
        }
        await api.create_template(template)
        await api.put_flow(FLOW, {"steps": STEPS})
    return key, tenant.id


async def _run_counts(engine: Any, tenant_id: uuid.UUID) -> dict[str, int]:
    query = (
        select(FlowRun.status, func.count())
        .where(FlowRun.tenant_id == tenant_id)
        .group_by(FlowRun.status)
    )
    async with engine.connect() as conn:
        return {status: count for status, count in (await conn.execute(query)).all()}


async def run_flow(
    bench: BenchHerald, key: str, tenant_id: uuid.UUID, recipients: int, interval: float
) -> dict[str, Any]:
    """Trigger the flow for every recipient and follow the runs to their last email."""
    before = delivered_emails(bench.sinks)
    emails = 2 * recipients
    engine = make_engine(bench.settings, pool_size=1)
    run_ids: list[str] = []
    try:
        async with api_session(bench, key) as api:
            started = time.perf_counter()
            for first in range(0, recipients, TRIGGER_CHUNK):
                ids = [user_id(i) for i in range(first, min(recipients, first + TRIGGER_CHUNK))]
                body = {"recipients": ids, "data": {"n": first}}
                async with api.post(f"/v1/flows/{FLOW}/trigger", json=body) as answer:
                    assert answer.status == 202, await answer.text()
                    run_ids += [run["run_id"] for run in (await answer.json())["runs"]]
            triggered = time.perf_counter() - started
        all_sent = all_done = None
        while all_sent is None or all_done is None:
            now = time.perf_counter() - started
            if all_sent is None and delivered_emails(bench.sinks) - before >= emails:
                all_sent = now
            if all_done is None:
                counts = await _run_counts(engine, tenant_id)
                ended = sum(count for status, count in counts.items() if status != "running")
                if ended >= recipients:
                    assert counts.get("completed") == recipients, counts
                    all_done = now
            await asyncio.sleep(interval)
    finally:
        await engine.dispose()
    arrived = delivered_emails(bench.sinks) - before
    assert arrived == emails, f"{arrived} of {emails} emails reached the SMTP server"
    return {
        "run_ids": run_ids,
        "trigger_seconds": round(triggered, 3),
        "runs": {"seconds": round(all_done, 2), "per_second": round(recipients / all_done, 1)},
        "emails": {"seconds": round(all_sent, 2), "per_second": round(emails / all_sent, 1)},
    }


def _cost(history: Any) -> dict[str, int]:
    cost = shape(history)
    return {
        "events": cost.events,
        "workflow_tasks": cost.workflow_tasks,
        "billable_actions": cost.actions,
    }


async def temporal_costs(bench: BenchHerald, run_id: str) -> dict[str, Any]:
    """The history shapes of one flow run, its notifications, and one single send."""
    client: Client = await connect(bench.settings)
    run = uuid.UUID(run_id)
    flow = _cost(await client.get_workflow_handle(run_workflow_id(run)).fetch_history())
    sends = [
        _cost(
            await client.get_workflow_handle(
                workflow_id_for(step_notification_id(run, step["id"]))
            ).fetch_history()
        )
        for step in STEPS
    ]
    single = None
    async for execution in client.list_workflows(
        "WorkflowType = 'NotificationWorkflow' AND ExecutionStatus = 'Completed'", limit=1
    ):
        single = _cost(await client.get_workflow_handle(execution.id).fetch_history())
    per_run = {name: flow[name] + sum(send[name] for send in sends) for name in flow}
    ratio = (
        round(per_run["billable_actions"] / (2 * single["billable_actions"]), 2) if single else None
    )
    return {
        "flow_run_workflow": flow,
        "single_notification": single,
        "per_flow_run_with_its_notifications": per_run,
        "ratio_actions_flow_to_two_singles": ratio,
    }


async def main() -> None:
    """Measure single notifications, then the flow, and print the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=200)
    parser.add_argument("--single", type=int, default=200, help="single emails for the baseline")
    parser.add_argument("--concurrency", type=int, default=32, help="single-email callers")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between reads")
    args = parser.parse_args()

    async with local_herald("flows") as bench:
        await bench.start("api", "core", "email")
        async with LoadGenerator(bench.settings, bench.sinks, args.concurrency) as load:
            single = await load.rate(args.single, bench.pids(), {})
        key, tenant_id = await set_up(bench, args.recipients)
        flow = await run_flow(bench, key, tenant_id, args.recipients, args.interval)
        temporal = await temporal_costs(bench, flow.pop("run_ids")[0])

    single_rate = single["per_second"]
    print(
        json.dumps(
            {
                "recipients": args.recipients,
                "single_notifications": args.single,
                "flow": flow,
                "single": {"emails_per_second": round(single_rate, 1)},
                "ratio_emails_flow_to_single": round(flow["emails"]["per_second"] / single_rate, 3),
                "temporal": temporal,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
