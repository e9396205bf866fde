"""Histories of today's ``NotificationWorkflow`` and replaying them in Temporal's sandbox.

``run_every_path`` drives one notification down each path through the real API, workers,
Temporal and sinks and returns the histories, named; ``save`` writes them as the corpus
in ``tests/workflows/histories/`` (``v1-<path>.json``) that ``test_history_corpus.py``
replays on every run; ``replay`` replays histories against the current workflow code.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistory
from temporalio.worker import Replayer

from devtools.sinks import Rule, Sinks
from herald.contracts import ResendRequest, workflow_id_for
from herald.correlation import CorrelationInterceptor
from herald.settings import get_settings
from herald.temporal import data_converter
from tests.harness import Tenant, wait_for_status
from workflows.notification import NotificationWorkflow
from workflows.notification_v1 import NotificationWorkflowV1

CORPUS = Path(__file__).with_name("histories")
# The workflow's version the recorded histories belong to: bump it when recording the
# histories of a changed workflow, and keep the older files (running notifications
# still have those histories).
VERSION = "v3"
# Each version's histories replay against the code that keeps running them: the first
# version's runs finish on the core worker, which registers ``NotificationWorkflowV1``
# under the same workflow type; the second's (one task per clean send, with the final
# upsert and the rendered body in the history) run on today's code.
CODE: dict[str, type] = {
    "v1": NotificationWorkflowV1,
    "v2": NotificationWorkflow,
    VERSION: NotificationWorkflow,
}
LATER = "2099-01-01T00:00:00Z"


async def replay(
    histories: Iterable[WorkflowHistory], workflow: type = NotificationWorkflow
) -> tuple[int, list[str]]:
    """Replay ``histories`` against ``workflow`` inside the sandbox (the default runner):
    how many, and why any failed. Herald's converter decrypts what the payload codec
    encrypted, and passes the clear payloads of older histories through."""
    replayer = Replayer(
        workflows=[workflow],
        data_converter=data_converter(get_settings()),
        interceptors=[CorrelationInterceptor()],
    )

    async def each() -> AsyncIterator[WorkflowHistory]:
        for history in histories:
            yield history

    replayed, failures = 0, []
    async with replayer.workflow_replay_iterator(each()) as results:
        async for result in results:
            replayed += 1
            if result.replay_failure is not None:
                failures.append(f"{result.history.workflow_id}: {str(result.replay_failure)[:500]}")
    return replayed, failures


def load_corpus(directory: Path = CORPUS, version: str = "*") -> list[WorkflowHistory]:
    """Every recorded history (of one version, if given), named after its file."""
    return [
        WorkflowHistory.from_json(path.stem, path.read_text())
        for path in sorted(directory.glob(f"{version}-*.json"))
    ]


def save(histories: dict[str, WorkflowHistory], directory: Path = CORPUS) -> list[Path]:
    """Write each history as ``<VERSION>-<name>.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, history in sorted(histories.items()):
        path = directory / f"{VERSION}-{name}.json"
        path.write_text(history.to_json() + "\n")
        written.append(path)
    return written


async def _history(
    client: Client, notification_id: str, run_id: str | None = None
) -> WorkflowHistory:
    handle = client.get_workflow_handle(workflow_id_for(notification_id), run_id=run_id)
    return await handle.fetch_history()


async def _continued_as_new(
    tenant: Tenant, client: Client, user_id: str, template: str
) -> tuple[str, str]:
    """A scheduled notification asked to resend while it waits, then cancelled: its run
    continues as new into cycle 2, which is cancelled in turn. Returns the id and the
    first run's id."""
    nid = await tenant.send("email", user_id, template, {"name": "Di"}, send_at=LATER)
    await wait_for_status(tenant.client, nid, {"scheduled"})
    handle = client.get_workflow_handle(workflow_id_for(nid))
    first_run = (await handle.describe()).run_id
    assert first_run is not None
    await handle.signal(NotificationWorkflow.resend, ResendRequest(reason="corpus"))
    cancelled = await tenant.client.post(f"/v1/notifications/{nid}/cancel")
    assert cancelled.status_code == 202, cancelled.text
    # Wait for the second run to be waiting on its schedule, then cancel that one.
    for _ in range(600):
        described = await handle.describe()
        if described.run_id != first_run and described.status == WorkflowExecutionStatus.RUNNING:
            second = client.get_workflow_handle(workflow_id_for(nid), run_id=described.run_id)
            if (await second.query(NotificationWorkflow.status)).status.value == "scheduled":
                await second.signal(NotificationWorkflow.cancel)
                await second.result()
                return nid, first_run
        await asyncio.sleep(0.1)
    raise AssertionError("the resend never continued as a new run")


async def run_every_path(
    tenant: Tenant, sinks: Sinks, client: Client
) -> dict[str, WorkflowHistory]:
    """One notification down each path of the workflow, and its history (two for the run
    that continued as new)."""
    user = await tenant.user()
    flaky = await tenant.user()
    down = await tenant.user()
    no_device = await tenant.user()
    opted_out = await tenant.user(preferences={"email": False})
    sinks.state.add_rule(Rule(match=flaky["phone"], fail_with=[503]))
    outage = sinks.state.add_rule(Rule(match=down["phone"], always=503))
    email = await tenant.template("email", "<p>Hi {{ name }}</p>", "Hi")
    sms = await tenant.template("sms", "Hi {{ name }}", None)
    both = await tenant.template("push", "Hi {{ name }}", "Hi")
    await tenant.template("email", "<p>Hi {{ name }}</p>", "Hi", key=both)
    # A missing nested key passes the intake's data check and fails the render.
    nested = await tenant.template("email", "<p>Hi {{ person.name }}</p>", "Hi")
    soon = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()

    ids = {
        "clean-send": await tenant.send("email", user["id"], email, {"name": "Ada"}),
        "retried-send": await tenant.send("sms", flaky["id"], sms, {"name": "Ada"}),
        "scheduled-send": await tenant.send(
            "email", user["id"], email, {"name": "Bo"}, send_at=soon
        ),
        "cancelled-while-scheduled": await tenant.send(
            "email", user["id"], email, {"name": "Cy"}, send_at=LATER
        ),
        "fallback": await tenant.send(
            "push", no_device["id"], both, {"name": "Ed"}, fallback=["email"]
        ),
        "failed-after-retries": await tenant.send("sms", down["id"], sms, {"name": "Fa"}),
        "failed-render": await tenant.send("email", user["id"], nested, {"person": {}}),
        "suppressed": await tenant.send("email", opted_out["id"], email, {"name": "Gu"}),
    }
    outcomes = {
        "clean-send": "sent",
        "retried-send": "sent",
        "scheduled-send": "sent",
        "fallback": "sent",
        "failed-after-retries": "failed",
        "failed-render": "failed",
        "suppressed": "suppressed",
    }
    for name, outcome in outcomes.items():
        final = await wait_for_status(tenant.client, ids[name], timeout=60)
        assert final["status"] == outcome, (name, final)
    await wait_for_status(tenant.client, ids["cancelled-while-scheduled"], {"scheduled"})
    cancel = await tenant.client.post(
        f"/v1/notifications/{ids['cancelled-while-scheduled']}/cancel"
    )
    assert cancel.status_code == 202, cancel.text
    await wait_for_status(tenant.client, ids["cancelled-while-scheduled"], {"cancelled"})

    # A resend of the failed one, once its provider is back, is a new run: cycle 2.
    sinks.state.rules.remove(outage)
    failed = ids["failed-after-retries"]
    first_failed_run = (await client.get_workflow_handle(workflow_id_for(failed)).describe()).run_id
    resent = await tenant.client.post(f"/v1/notifications/{failed}/resend")
    assert resent.status_code == 202, resent.text
    final = await wait_for_status(tenant.client, failed, {"sent"}, timeout=60)
    assert final["cycle"] == 2

    histories = {name: await _history(client, nid) for name, nid in ids.items()}
    histories["failed-after-retries"] = await _history(client, failed, first_failed_run)
    histories["resend-cycle-2"] = await _history(client, failed)

    continued, first_run = await _continued_as_new(tenant, client, user["id"], email)
    histories["continued-as-new"] = await _history(client, continued, first_run)
    histories["continued-as-new-cycle-2"] = await _history(client, continued)
    return histories
