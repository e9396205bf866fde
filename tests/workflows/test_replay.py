"""Workflow determinism: the core worker runs ``NotificationWorkflow`` outside Temporal's
sandbox for speed, so the sandbox's checks run here instead. Every notification history
this test run produced is replayed, inside the sandbox, against today's workflow code:
a non-deterministic call (clock, randomness, I/O) or a change that no longer matches
recorded histories fails the replay.

The module runs last (``tests/workflows`` sorts last), so it sees the histories of every
other test; it also makes its own, one per path, so it checks something when run alone.
"""

from __future__ import annotations

from temporalio.client import Client
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from devtools.sinks import Rule, Sinks
from herald.correlation import CorrelationInterceptor
from herald.settings import Settings
from herald.temporal import connect
from tests.harness import Tenant, wait_for_status
from workflows.notification import NotificationWorkflow

CLOSED = 'WorkflowType="NotificationWorkflow" AND ExecutionStatus!="Running"'
LATER = "2099-01-01T00:00:00Z"


async def _one_of_each_path(tenant: Tenant, sinks: Sinks) -> list[str]:
    """Sent, retried then sent, suppressed, failed on render, cancelled, resent."""
    user = await tenant.user()
    opted_out = await tenant.user(preferences={"email": False})
    sinks.state.add_rule(Rule(match=user["phone"], fail_with=[503]))
    email = await tenant.template("email", "<p>Hi {{ name }}</p>", "Hi")
    sms = await tenant.template("sms", "Hi {{ name }}", None)
    ids = [
        await tenant.send("email", user["id"], email, {"name": "Ada"}),
        await tenant.send("sms", user["id"], sms, {"name": "Ada"}),
        await tenant.send("email", opted_out["id"], email, {"name": "Bo"}),
        await tenant.send("email", user["id"], email, {}),
        await tenant.send("email", user["id"], email, {"name": "Cy"}, send_at=LATER),
    ]
    outcomes = ["sent", "sent", "suppressed", "failed"]
    for nid, outcome in zip(ids, outcomes, strict=False):
        assert (await wait_for_status(tenant.client, nid))["status"] == outcome
    cancelled = await tenant.client.post(f"/v1/notifications/{ids[-1]}/cancel")
    assert cancelled.status_code == 202, cancelled.text
    assert (await wait_for_status(tenant.client, ids[-1]))["status"] == "cancelled"
    resent = await tenant.client.post(f"/v1/notifications/{ids[3]}/resend")
    assert resent.status_code == 202, resent.text
    return ids


async def _replay_all(client: Client) -> tuple[int, list[str]]:
    replayer = Replayer(
        workflows=[NotificationWorkflow],
        workflow_runner=SandboxedWorkflowRunner(),
        data_converter=client.data_converter,
        interceptors=[CorrelationInterceptor()],
    )
    replayed, failures = 0, []
    async with replayer.workflow_replay_iterator(
        client.list_workflows(CLOSED).map_histories()
    ) as results:
        async for result in results:
            replayed += 1
            if result.replay_failure is not None:
                failures.append(f"{result.history.workflow_id}: {str(result.replay_failure)[:300]}")
    return replayed, failures


async def test_every_history_replays_deterministically_in_the_sandbox(
    tenant: Tenant, sinks: Sinks, settings: Settings
) -> None:
    ids = await _one_of_each_path(tenant, sinks)
    client = await connect(settings)

    replayed, failures = await _replay_all(client)

    assert failures == []
    assert replayed >= len(ids)
