"""Flows on the whole stack: a two-email flow with a delay between, triggered for two
recipients, reaches the SMTP sink exactly once per step; an idempotency key replayed
starts nothing; a cancellation key stops a run in its delay; a test key's runs never
reach a provider; another tenant sees nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.processes import ManagedProcess
from devtools.sinks import Sinks
from herald import amqp, search
from herald.contracts import Channel
from herald.db import make_engine
from herald.flows.models import run_workflow_id, step_notification_id
from herald.temporal import connect
from herald.tenants import create_api_key
from tests import fuzz_corpus
from tests.bridge.support import herald_cli, wait_dead
from tests.harness import Stack, Tenant, new_run_id, producer_settings

pytestmark = pytest.mark.timeout(180)


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 60.0) -> None:
    """Poll ``check`` until it holds, or fail after ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not await check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.25)


def emails_to(sinks: Sinks, user: dict[str, Any]) -> list[Any]:
    return list(sinks.state.received("email", to=user["email"]))


async def run_of(client: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    answer = await client.get(f"/v1/flow-runs/{run_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def two_emails(tenant: Tenant, seconds: int) -> str:
    """A flow: an email, a delay of ``seconds``, another email; its key."""
    template = await tenant.template("email", "Hello {{ name }}", subject="Hi {{ name }}")
    key = f"flow-{uuid.uuid4().hex[:8]}"
    steps = [
        {"id": "first", "type": "send", "channel": "email", "template": template},
        {"id": "pause", "type": "delay", "seconds": seconds},
        {"id": "second", "type": "send", "channel": "email", "template": template},
    ]
    put = await tenant.client.put(f"/v1/flows/{key}", json={"name": "Two emails", "steps": steps})
    assert put.status_code == 201, put.text
    return key


async def test_each_recipient_gets_each_email_once_and_a_replay_starts_nothing(
    stack: Stack, tenant: Tenant, other_tenant: Tenant, sinks: Sinks
) -> None:
    key = await two_emails(tenant, seconds=2)
    users = [await tenant.user(), await tenant.user()]
    body = {
        "recipients": [user["id"] for user in users],
        "data": {"name": "Ada"},
        "idempotency_key": f"welcome-{uuid.uuid4()}",
    }
    triggered = await tenant.client.post(f"/v1/flows/{key}/trigger", json=body)
    assert triggered.status_code == 202, triggered.text
    runs = {run["user_id"]: run["run_id"] for run in triggered.json()["runs"]}
    assert set(runs) == {user["id"] for user in users}

    replayed = await tenant.client.post(f"/v1/flows/{key}/trigger", json=body)
    assert replayed.status_code == 202
    assert replayed.json()["trigger_id"] == triggered.json()["trigger_id"]
    assert {run["user_id"]: run["run_id"] for run in replayed.json()["runs"]} == runs

    async def all_completed() -> bool:
        states = [await run_of(tenant.client, run_id) for run_id in runs.values()]
        return all(state["status"] == "completed" for state in states)

    await eventually(all_completed)
    await eventually(
        lambda: asyncio.sleep(0, all(len(emails_to(sinks, user)) >= 2 for user in users))
    )
    for user in users:
        run = await run_of(tenant.client, runs[user["id"]])
        assert [(step["id"], step["status"]) for step in run["steps"]] == [
            ("first", "completed"),
            ("pause", "completed"),
            ("second", "completed"),
        ]
        assert run["version"] == 1 and run["flow"] == key and run["test"] is False
        # Each send is an ordinary notification, found by the id the run shows.
        notification = await tenant.client.get(
            f"/v1/notifications/{run['steps'][2]['notification_id']}"
        )
        assert notification.status_code == 200
        assert notification.json()["status"] in ("sent", "delivered")
        assert [mail.subject for mail in emails_to(sinks, user)] == ["Hi Ada", "Hi Ada"]

    listed = await tenant.client.get(
        "/v1/flow-runs", params={"trigger_id": triggered.json()["trigger_id"]}
    )
    assert {item["id"] for item in listed.json()["items"]} == set(runs.values())

    # Another tenant sees none of it.
    some_run = next(iter(runs.values()))
    assert (await other_tenant.client.get(f"/v1/flow-runs/{some_run}")).status_code == 404
    assert (await other_tenant.client.get("/v1/flow-runs")).json()["items"] == []
    assert (await other_tenant.client.get(f"/v1/flows/{key}")).status_code == 404


async def test_a_cancellation_key_stops_a_run_in_its_delay(
    stack: Stack, tenant: Tenant, sinks: Sinks
) -> None:
    key = await two_emails(tenant, seconds=3600)
    user = await tenant.user()
    cancellation_key = f"order-{uuid.uuid4()}"
    triggered = await tenant.client.post(
        f"/v1/flows/{key}/trigger",
        json={
            "recipients": [user["id"]],
            "data": {"name": "Bo"},
            "cancellation_key": cancellation_key,
        },
    )
    assert triggered.status_code == 202, triggered.text
    run_id = triggered.json()["runs"][0]["run_id"]

    async def in_its_delay() -> bool:
        steps = (await run_of(tenant.client, run_id))["steps"]
        return any(step["id"] == "pause" and step["status"] == "running" for step in steps)

    await eventually(in_its_delay)
    await eventually(lambda: asyncio.sleep(0, len(emails_to(sinks, user)) == 1))

    other_key = await tenant.client.post("/v1/flow-runs/cancel", json={"cancellation_key": "no"})
    assert other_key.json() == {"cancelled": 0}
    cancelled = await tenant.client.post(
        "/v1/flow-runs/cancel", json={"cancellation_key": cancellation_key}
    )
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json() == {"cancelled": 1}

    async def is_cancelled() -> bool:
        return bool((await run_of(tenant.client, run_id))["status"] == "cancelled")

    await eventually(is_cancelled)
    run = await run_of(tenant.client, run_id)
    assert [(step["id"], step["status"]) for step in run["steps"]] == [
        ("first", "completed"),
        ("pause", "cancelled"),
    ]
    # The second step's notification was never made, and only the first email went out.
    second = step_notification_id(uuid.UUID(run_id), "second")
    assert (await tenant.client.get(f"/v1/notifications/{second}")).status_code == 404
    assert len(emails_to(sinks, user)) == 1


async def test_a_test_keys_runs_never_reach_a_provider(
    stack: Stack, tenant: Tenant, sinks: Sinks
) -> None:
    key = await two_emails(tenant, seconds=1)
    user = await tenant.user()
    engine = make_engine(stack.settings, pool_size=1)
    try:
        test_key = await create_api_key(engine, tenant.name, test=True)
    finally:
        await engine.dispose()
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {test_key}"}, timeout=30
    ) as tester:
        nul = await tester.post(
            f"/v1/flows/{key}/trigger", json={"recipients": [user["id"]], "data": {"x": "a\x00"}}
        )
        assert nul.status_code == 422
        assert nul.json()["detail"][0]["loc"][-1] == "data"
        triggered = await tester.post(
            f"/v1/flows/{key}/trigger", json={"recipients": [user["id"]], "data": {"name": "T"}}
        )
        assert triggered.status_code == 202, triggered.text
        run_id = triggered.json()["runs"][0]["run_id"]

        async def completed() -> bool:
            return bool((await run_of(tester, run_id))["status"] == "completed")

        await eventually(completed)
        run = await run_of(tester, run_id)
        assert run["test"] is True
        for step in (run["steps"][0], run["steps"][2]):
            sent = await tester.get(f"/v1/notifications/{step['notification_id']}")

            async def ended(notification_id: str = step["notification_id"]) -> bool:
                answer = await tester.get(f"/v1/notifications/{notification_id}")
                return answer.json()["status"] in ("sent", "delivered")

            await eventually(ended)
            assert sent.status_code == 200
        assert emails_to(sinks, user) == []
        # A live key of the tenant sees its test runs too (a test key sees only those).
        live_runs = await tenant.client.get("/v1/flow-runs", params={"flow": key})
        assert [item["id"] for item in live_runs.json()["items"]] == [run_id]


async def test_a_receipt_wakes_a_waiting_run_at_once(
    stack: Stack, tenant: Tenant, sinks: Sinks
) -> None:
    """The client reports the email delivered: the run is told (a ``step_event`` signal
    in its history) and its wait ends ``met``, instead of at its next read."""
    template = await tenant.template("email", "Hello {{ name }}", subject="Hi {{ name }}")
    key = f"flow-{uuid.uuid4().hex[:8]}"
    steps = [
        {"id": "mail", "type": "send", "channel": "email", "template": template},
        {"id": "seen", "type": "wait", "step": "mail", "for": "delivered", "timeout_seconds": 3600},
    ]
    assert (await tenant.client.put(f"/v1/flows/{key}", json={"steps": steps})).status_code == 201
    user = await tenant.user()
    triggered = await tenant.client.post(
        f"/v1/flows/{key}/trigger", json={"recipients": [user["id"]], "data": {"name": "Cy"}}
    )
    assert triggered.status_code == 202, triggered.text
    run_id = triggered.json()["runs"][0]["run_id"]
    notification_id = step_notification_id(uuid.UUID(run_id), "mail")

    async def sent_and_waiting() -> bool:
        answer = await tenant.client.get(f"/v1/notifications/{notification_id}")
        steps = (await run_of(tenant.client, run_id))["steps"]
        waiting = any(step["id"] == "seen" and step["status"] == "running" for step in steps)
        return answer.status_code == 200 and answer.json()["status"] == "sent" and waiting

    await eventually(sent_and_waiting)
    reported = await tenant.client.post(
        f"/v1/notifications/{notification_id}/receipt", json={"status": "delivered"}
    )
    assert reported.status_code == 202, reported.text

    async def met() -> bool:
        return bool((await run_of(tenant.client, run_id))["status"] == "completed")

    await eventually(met)
    run = await run_of(tenant.client, run_id)
    assert [(step["id"], step["outcome"]) for step in run["steps"]] == [
        ("mail", "accepted"),
        ("seen", "met"),
    ]
    handle = (await connect(stack.settings)).get_workflow_handle(run_workflow_id(run_id))
    history = await handle.fetch_history()
    signals = [
        event.workflow_execution_signaled_event_attributes.signal_name
        for event in history.events
        if event.HasField("workflow_execution_signaled_event_attributes")
    ]
    assert signals == ["step_event"]
    # The Temporal UI finds the run by flow, recipient and state.
    found = (await handle.describe()).typed_search_attributes
    assert found.get(search.FLOW) == key and found.get(search.RECIPIENT) == user["id"]
    assert found.get(search.FLOW_STATE) == "completed"


async def test_triggers_within_a_digest_window_become_one_email(
    stack: Stack, tenant: Tenant, other_tenant: Tenant, sinks: Sinks
) -> None:
    """Three triggers in the window: one email listing all three (``items``, ``count``);
    the two later runs end ``digested``, naming the run that carries them."""
    template = await tenant.template(
        "email",
        "{{ count }} comments: {% for item in items %}{{ item.who }};{% endfor %}",
        subject="{{ count }} new comments",
    )
    key = f"flow-{uuid.uuid4().hex[:8]}"
    steps = [
        {"id": "batch", "type": "digest", "window_seconds": 3, "key": "data.thread"},
        {"id": "mail", "type": "send", "channel": "email", "template": template},
    ]
    assert (await tenant.client.put(f"/v1/flows/{key}", json={"steps": steps})).status_code == 201
    user = await tenant.user()
    runs = []
    for who in ("ann", "bob", "cat"):
        triggered = await tenant.client.post(
            f"/v1/flows/{key}/trigger",
            json={"recipients": [user["id"]], "data": {"thread": "t1", "who": who}},
        )
        assert triggered.status_code == 202, triggered.text
        runs.append(triggered.json()["runs"][0]["run_id"])
        if who == "ann":
            # The first run opens the window before the others join it.
            async def opened() -> bool:
                return bool((await run_of(tenant.client, runs[0]))["steps"])

            await eventually(opened)

    async def all_ended() -> bool:
        states = [await run_of(tenant.client, run_id) for run_id in runs]
        return all(state["status"] == "completed" for state in states)

    await eventually(all_ended)
    carrier = await run_of(tenant.client, runs[0])
    assert carrier["steps"][0]["outcome"] == "carried" and carrier["steps"][0]["count"] == 3
    for run_id in runs[1:]:
        [step] = (await run_of(tenant.client, run_id))["steps"]
        assert step["outcome"] == "digested" and step["carrier_run_id"] == runs[0]
    await eventually(lambda: asyncio.sleep(0, len(emails_to(sinks, user)) == 1))
    [mail] = emails_to(sinks, user)
    assert mail.subject == "3 new comments"
    # Another tenant cannot read the runs or trigger the flow.
    assert (await other_tenant.client.get(f"/v1/flow-runs/{runs[0]}")).status_code == 404
    other = await other_tenant.client.post(
        f"/v1/flows/{key}/trigger", json={"recipients": [user["id"]], "data": {}}
    )
    assert other.status_code == 404


async def test_a_topic_trigger_runs_the_flow_for_each_subscriber_once(
    stack: Stack, tenant: Tenant, other_tenant: Tenant, sinks: Sinks
) -> None:
    key = await two_emails(tenant, seconds=1)
    users = [await tenant.user() for _ in range(3)]
    topic = f"topic-{uuid.uuid4().hex[:8]}"
    assert (await tenant.client.put(f"/v1/topics/{topic}", json={})).status_code == 201
    added = await tenant.client.post(
        f"/v1/topics/{topic}/subscribers", json={"user_ids": [user["id"] for user in users]}
    )
    assert added.status_code < 300, added.text
    body = {"topic": topic, "data": {"name": "Di"}, "idempotency_key": f"t-{uuid.uuid4()}"}
    triggered = await tenant.client.post(f"/v1/flows/{key}/trigger", json=body)
    assert triggered.status_code == 202, triggered.text
    trigger_id = triggered.json()["trigger_id"]
    status_url = triggered.json()["status_url"]
    assert status_url == f"/v1/flow-runs?trigger_id={trigger_id}"
    again = await tenant.client.post(f"/v1/flows/{key}/trigger", json=body)
    assert again.status_code == 202 and again.json()["trigger_id"] == trigger_id

    async def all_completed() -> bool:
        items = (await tenant.client.get(status_url)).json()["items"]
        return len(items) == 3 and all(item["status"] == "completed" for item in items)

    await eventually(all_completed)
    items = (await tenant.client.get(status_url)).json()["items"]
    assert sorted(item["user_id"] for item in items) == sorted(user["id"] for user in users)
    await eventually(
        lambda: asyncio.sleep(0, all(len(emails_to(sinks, user)) >= 2 for user in users))
    )
    assert all(len(emails_to(sinks, user)) == 2 for user in users)

    # Hostile topics: unknown, another tenant's, malformed, NUL, huge, with recipients.
    theirs = f"topic-{uuid.uuid4().hex[:8]}"
    assert (await other_tenant.client.put(f"/v1/topics/{theirs}", json={})).status_code == 201
    for bad in (theirs, "no-such-topic", "bad topic", "a\x00b", "t" * 5000):
        refused = await tenant.client.post(f"/v1/flows/{key}/trigger", json={"topic": bad})
        assert refused.status_code == 422, (bad[:20], refused.text)
    both = {"topic": topic, "recipients": [users[0]["id"]]}
    assert (await tenant.client.post(f"/v1/flows/{key}/trigger", json=both)).status_code == 422
    # Their key cannot trigger this tenant's flow for this tenant's topic.
    mine = await other_tenant.client.post(f"/v1/flows/{key}/trigger", json={"topic": topic})
    assert mine.status_code == 404


async def test_a_queued_flow_message_triggers_the_flow_and_bad_ones_are_dead_lettered(
    stack: Stack, bridge: ManagedProcess, tenant: Tenant, other_tenant: Tenant, sinks: Sinks
) -> None:
    key = await two_emails(tenant, seconds=1)
    user = await tenant.user()
    theirs = await two_emails(other_tenant, seconds=1)
    idempotency_key = f"q-{uuid.uuid4()}"
    good = {"flow": key, "user_id": user["id"], "data": {"name": "Qu"}}
    good["idempotency_key"] = idempotency_key
    run = new_run_id()
    hostile = {
        f"flow-nul-{run}": ({**good, "flow": "a\x00b"}, "flow"),
        f"flow-huge-{run}": ({**good, "flow": "f" * 5000}, "flow"),
        f"flow-unknown-{run}": ({**good, "flow": "no-such-flow"}, "not found"),
        f"flow-theirs-{run}": ({**good, "flow": theirs}, "not found"),
        f"flow-both-{run}": ({**good, "recipients": [user["id"]]}, "not both"),
        f"flow-none-{run}": ({"flow": key, "data": {}}, "exactly one"),
        f"flow-data-{run}": ({**good, "data": ["not", "an", "object"]}, "data"),
        f"flow-nul-data-{run}": ({**good, "data": {"x": "a\x00"}}, "NUL"),
        f"flow-tenant-{run}": ({**good, "tenant": other_tenant.name}, "names tenant"),
        f"flow-extra-{run}": ({**good, "steps": []}, "steps"),
    }
    async with amqp.Publisher(await producer_settings(stack.settings, tenant.name)) as publisher:

        async def publish(raw: bytes, message_id: str) -> None:
            message = amqp.json_message(raw, message_id=message_id)
            await publisher.publish(amqp.REQUESTS_EXCHANGE, Channel.email.value, message)

        for message_id, (body, _) in hostile.items():
            await publish(fuzz_corpus.dumps(body), message_id)
        await publish(fuzz_corpus.dumps(good), f"flow-good-{run}")
        await publish(fuzz_corpus.dumps(good), f"flow-again-{run}")

    async def runs_of_user() -> list[dict[str, Any]]:
        listed = await tenant.client.get("/v1/flow-runs", params={"user_id": user["id"]})
        return list(listed.json()["items"])

    async def completed() -> bool:
        items = await runs_of_user()
        return len(items) == 1 and items[0]["status"] == "completed"

    await eventually(completed)
    await eventually(lambda: asyncio.sleep(0, len(emails_to(sinks, user)) == 2))
    dead = await wait_dead(stack.settings, set(hostile), timeout=60)
    for message_id, (_, reason) in hostile.items():
        assert reason in dead[message_id].reason, (message_id, dead[message_id].reason)
    # The same idempotency key published twice started one run.
    assert len(await runs_of_user()) == 1
    assert bridge.alive


async def test_the_cli_triggers_a_flow_and_prints_the_trigger_id(
    stack: Stack, tenant: Tenant, sinks: Sinks, tmp_path: Path
) -> None:
    template = await tenant.template("email", "Hello {{ name }}", subject="Hi {{ name }}")
    steps = [{"id": "mail", "type": "send", "channel": "email", "template": template}]
    definition = tmp_path / "steps.json"
    definition.write_text(json.dumps(steps))
    key = f"flow-{uuid.uuid4().hex[:8]}"
    put = await asyncio.to_thread(
        herald_cli, stack.settings, "flow", "put", key, "--file", str(definition),
        "--tenant", tenant.name,
    )  # fmt: skip
    assert put.returncode == 0, put.stderr
    assert put.stdout.strip() == "1"
    user = await tenant.user()
    args = ("flow", "trigger", key, "--user", user["id"], "--tenant", tenant.name)
    triggered = await asyncio.to_thread(
        herald_cli, stack.settings, *args, "--data", '{"name": "Cli"}', "--idempotency-key", "c1"
    )
    assert triggered.returncode == 0, triggered.stderr
    trigger_id = triggered.stdout.strip()
    assert str(uuid.UUID(trigger_id)) == trigger_id

    async def completed() -> bool:
        listed = await tenant.client.get("/v1/flow-runs", params={"trigger_id": trigger_id})
        items = listed.json()["items"]
        return len(items) == 1 and items[0]["status"] == "completed"

    await eventually(completed)
    await eventually(lambda: asyncio.sleep(0, len(emails_to(sinks, user)) == 1))
    for bad, why in (
        (("--data", "{not json"), "invalid trigger"),
        (("--data", '{"x": "a\\u0000"}'), "NUL"),
        (("--user", "u\x01" * 300), "invalid trigger"),
    ):
        refused = await asyncio.to_thread(herald_cli, stack.settings, *args, *bad)
        assert refused.returncode == 2 and why in refused.stderr, refused.stderr
    unknown = await asyncio.to_thread(
        herald_cli,
        stack.settings,
        "flow",
        "trigger",
        "nope",
        "--user",
        "x",
        "--tenant",
        tenant.name,
    )
    assert unknown.returncode == 1 and "not found" in unknown.stderr
