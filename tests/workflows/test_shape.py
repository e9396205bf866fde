"""What a clean send costs, counted from its real history and from PostgreSQL's own
statistics: one workflow task of at most 8 history events and at most 2 billable actions
(the start, the local activities of that task: no search-attribute upsert), at most 3
PostgreSQL statements (the API's ``accepted``, the workflow's ``prepare``, ``sending``
with ``sent``), and a rendered body that stays out of the history. A change that adds a
task, an activity, an upsert, a statement or the body to the common path fails here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from sqlalchemy import text
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from benchmarks.comparison import email_body
from devtools.histories import shape
from devtools.sinks import Rule, Sinks
from herald import search
from herald.contracts import workflow_id_for
from herald.db import make_engine
from herald.settings import Settings
from herald.temporal import connect
from tests.harness import Tenant, events, wait_for_status

# Statements every clean send may cost, and the sends they are counted over.
MAX_STATEMENTS = 3
COUNTED_SENDS = 20


async def test_a_clean_send_is_one_workflow_task_of_few_events_and_actions(
    tenant: Tenant, settings: Settings
) -> None:
    user = await tenant.user()
    template = await tenant.template("email", "<p>Hi {{ name }}</p>", "Hi")
    nid = await tenant.send("email", user["id"], template, {"name": "Ada"})
    final = await wait_for_status(tenant.client, nid, timeout=30)
    assert final["status"] == "sent"

    client = await connect(settings)
    handle = client.get_workflow_handle(workflow_id_for(nid))
    history = await handle.fetch_history()
    cost = shape(history)
    described = await handle.describe()

    assert cost.workflow_tasks == 1
    assert cost.events <= 8
    assert cost.actions <= 2
    upserts = EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES
    assert not [e for e in history.events if e.event_type == upserts]
    # No status in the Temporal UI (not a wrong one): what it is, and that it completed.
    attributes = described.typed_search_attributes
    assert attributes.get(search.STATUS) is None
    assert attributes.get(search.TENANT) == tenant.name
    assert described.status is not None and described.status.name == "COMPLETED"
    # It ran where the channel's capacity is: on the email workers' queue.
    assert described.task_queue == f"{settings.task_queue_prefix}-email"
    # And the log still tells the whole story, in order.
    assert [e["status"] for e in await events(tenant.client, nid)] == [
        "accepted",
        "sending",
        "sent",
    ]


async def _sent(client: Client, notification_ids: Iterable[str]) -> None:
    """Wait for the notifications' workflows to end (asking Temporal, not PostgreSQL)."""
    await asyncio.gather(
        *(client.get_workflow_handle(workflow_id_for(nid)).result() for nid in notification_ids)
    )


async def test_a_clean_send_costs_at_most_three_postgresql_statements(
    tenant: Tenant, settings: Settings
) -> None:
    engine = make_engine(settings, pool_size=1)
    client = await connect(settings)
    counts = text(
        "SELECT queryid, calls, query FROM pg_stat_statements"
        " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    try:
        async with engine.connect() as conn:
            await conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
            await conn.commit()

            async def snapshot() -> dict[int, tuple[int, str]]:
                rows = await conn.execute(counts)
                await conn.commit()
                return {row.queryid: (row.calls, row.query) for row in rows}

            user = await tenant.user()
            template = await tenant.template("email", "<p>Hi {{ name }}</p>", "Hi")
            # Warm: the tenant's key, integrations and template are known to every process.
            await _sent(client, [await tenant.send("email", user["id"], template, {"name": "A"})])
            # What runs with nothing sent (pollers, samplers) is not the sends' cost.
            before_idle = await snapshot()
            await asyncio.sleep(2)
            before = await snapshot()
            idle = {q for q, (calls, _) in before.items() if calls > before_idle.get(q, (0,))[0]}
            sent = [
                await tenant.send("email", user["id"], template, {"name": "Ada"})
                for _ in range(COUNTED_SENDS)
            ]
            await _sent(client, sent)
            after = await snapshot()
    finally:
        await engine.dispose()
    ran = {
        query: calls - before.get(queryid, (0,))[0]
        for queryid, (calls, query) in after.items()
        if queryid not in idle and calls > before.get(queryid, (0,))[0]
    }
    # Statements that run for every send (a cache refresh now and then is not one).
    per_send = {query: calls for query, calls in ran.items() if calls >= COUNTED_SENDS // 2}
    total = sum(per_send.values()) / COUNTED_SENDS
    assert total <= MAX_STATEMENTS, "\n\n".join(f"{n}x {q[:300]}" for q, n in per_send.items())
    # Each a single statement in autocommit: no BEGIN, COMMIT or ROLLBACK around them.
    assert not [q for q in per_send if q.split()[0].upper() in ("BEGIN", "COMMIT", "ROLLBACK")]
    assert [e["status"] for e in await events(tenant.client, sent[0])] == [
        "accepted",
        "sending",
        "sent",
    ]


async def test_a_30_kb_email_adds_under_2_kb_to_the_history(
    tenant: Tenant, settings: Settings, sinks: Sinks
) -> None:
    user = await tenant.user()
    short = await tenant.template("email", "<p>Order {{ n }}</p>", "Order {{ n }}")
    large = await tenant.template("email", email_body(30), "Order {{ n }}")
    client = await connect(settings)
    sizes = {}
    for template in (short, large):
        nid = await tenant.send("email", user["id"], template, {"n": 7})
        await _sent(client, [nid])
        history = await client.get_workflow_handle(workflow_id_for(nid)).fetch_history()
        sizes[template] = sum(event.ByteSize() for event in history.events)
        (mail,) = [
            m
            for m in sinks.state.received("email", to=user["email"])
            if m.message_id and nid in m.message_id
        ]
        # The whole email still reached the server.
        assert mail.content is not None and len(mail.content) > (30_000 if template == large else 0)
    assert sizes[large] - sizes[short] < 2048, sizes


async def test_a_retried_send_continues_as_a_regular_activity(
    tenant: Tenant, settings: Settings, sinks: Sinks
) -> None:
    user = await tenant.user()
    sinks.state.add_rule(Rule(match=user["phone"], fail_with=[503]))
    template = await tenant.template("sms", "Hi {{ name }}", None)
    nid = await tenant.send("sms", user["id"], template, {"name": "Bo"})
    final = await wait_for_status(tenant.client, nid, timeout=30)
    assert (final["status"], final["attempts"]) == ("sent", 2)

    client = await connect(settings)
    history = await client.get_workflow_handle(workflow_id_for(nid)).fetch_history()
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    # The first attempt was local; the second, a regular activity Temporal retries.
    assert scheduled == ["send_sms"]
    assert [e["status"] for e in await events(tenant.client, nid)] == [
        "accepted",
        "sending",
        "retrying",
        "sent",
    ]
