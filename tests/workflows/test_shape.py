"""What a clean send costs Temporal, counted from its real history: one workflow task,
at most 10 history events and at most 3 billable actions (the start, the local
activities of that task, the one search-attribute upsert at the end). A change that adds
a task, an activity or an upsert to the common path fails here.
"""

from __future__ import annotations

from devtools.histories import shape
from devtools.sinks import Rule, Sinks
from herald.contracts import workflow_id_for
from herald.settings import Settings
from herald.temporal import connect
from tests.harness import Tenant, events, wait_for_status


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
    cost = shape(await handle.fetch_history())
    described = await handle.describe()

    assert cost.workflow_tasks == 1
    assert cost.events <= 10
    assert cost.actions <= 3
    # It ran where the channel's capacity is: on the email workers' queue.
    assert described.task_queue == f"{settings.task_queue_prefix}-email"
    # And the log still tells the whole story, in order.
    assert [e["status"] for e in await events(tenant.client, nid)] == [
        "accepted",
        "sending",
        "sent",
    ]


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
