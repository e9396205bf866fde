"""What a flow promises where it meets time and concurrency, on the whole stack: the
onboarding flow takes each recipient's own path; a digest window survives its worker
SIGKILLed twice and sends one email of all fifty; a throttle admits exactly its limit;
a run waiting in a delay keeps the version it started with; a topic of 2,000 subscribers
fanned out while its worker is killed starts exactly one run each, and one cancellation
key stops all of them."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from devtools.sinks import Sinks
from herald.db import FlowRun, make_engine
from herald.flows.models import step_notification_id
from tests.e2e.test_broadcasts import _topic, _users
from tests.flows.test_flows_stack import emails_to, eventually, run_of
from tests.harness import Stack, Tenant

pytestmark = pytest.mark.timeout(300)


async def put_flow(tenant: Tenant, steps: list[dict[str, Any]]) -> str:
    key = f"flow-{uuid.uuid4().hex[:8]}"
    put = await tenant.client.put(f"/v1/flows/{key}", json={"steps": steps})
    assert put.status_code in (200, 201), put.text
    return key


async def trigger(tenant: Tenant, key: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = await tenant.client.post(f"/v1/flows/{key}/trigger", json=body)
    assert answer.status_code == 202, answer.text
    return dict(answer.json())


async def the_run(tenant: Tenant, key: str, user: dict[str, Any], data: dict[str, Any]) -> str:
    triggered = await trigger(tenant, key, {"recipients": [user["id"]], "data": data})
    return str(triggered["runs"][0]["run_id"])


async def all_ended(tenant: Tenant, runs: list[str], seconds: float = 90.0) -> list[dict[str, Any]]:
    async def ended() -> bool:
        states = [await run_of(tenant.client, run_id) for run_id in runs]
        return all(state["status"] != "running" for state in states)

    await eventually(ended, seconds)
    return [await run_of(tenant.client, run_id) for run_id in runs]


async def test_the_onboarding_flow_takes_each_recipients_own_path(
    stack: Stack, tenant: Tenant, sinks: Sinks
) -> None:
    """push → wait for it delivered → email if not → SMS unless on the pro plan. The wait
    is 15 s here (the time-skipping tests run it at 60 s): long enough for a receipt
    posted as soon as the push is sent, short enough for the suite."""
    push = await tenant.template("push", "Welcome, {{ name }}", subject="Welcome")
    email = await tenant.template("email", "Finish setting up, {{ name }}", subject="Set up")
    sms = await tenant.template("sms", "Hi {{ name }}, reply HELP for help", subject=None)
    key = await put_flow(
        tenant,
        [
            {"id": "push", "type": "send", "channel": "push", "template": push},
            {"id": "seen", "type": "wait", "step": "push", "for": "delivered",
             "timeout_seconds": 15},
            {"id": "missed", "type": "branch",
             "if": {"path": "steps.seen.outcome", "op": "eq", "value": "timeout"},
             "then": [{"id": "email", "type": "send", "channel": "email", "template": email}]},
            {"id": "plan", "type": "branch",
             "if": {"path": "data.plan", "op": "ne", "value": "pro"},
             "then": [{"id": "sms", "type": "send", "channel": "sms", "template": sms}]},
        ],
    )  # fmt: skip
    people = {name: await tenant.user() for name in ("ana", "ben", "cy")}
    tokens = {name: await tenant.device(user["id"]) for name, user in people.items()}
    plans = {"ana": "pro", "ben": "pro", "cy": "free"}
    runs = {
        name: await the_run(tenant, key, user, {"name": name, "plan": plans[name]})
        for name, user in people.items()
    }
    # Ana's app reports her push delivered as soon as it is sent; the others' never do.
    ana_push = step_notification_id(uuid.UUID(runs["ana"]), "push")

    async def ana_push_sent() -> bool:
        answer = await tenant.client.get(f"/v1/notifications/{ana_push}")
        return answer.status_code == 200 and answer.json()["status"] == "sent"

    await eventually(ana_push_sent)
    receipt = await tenant.client.post(
        f"/v1/notifications/{ana_push}/receipt", json={"status": "delivered"}
    )
    assert receipt.status_code == 202, receipt.text

    ended = dict(zip(runs, await all_ended(tenant, list(runs.values())), strict=True))
    paths = {
        name: [(s["id"], s["status"], s.get("outcome")) for s in run["steps"]]
        for name, run in ended.items()
    }
    assert paths["ana"] == [
        ("push", "completed", "accepted"),
        ("seen", "completed", "met"),
        ("missed", "completed", "else"),
        ("plan", "completed", "else"),
    ]
    assert paths["ben"] == [
        ("push", "completed", "accepted"),
        ("seen", "completed", "timeout"),
        ("missed", "completed", "then"),
        ("email", "completed", "accepted"),
        ("plan", "completed", "else"),
    ]
    assert paths["cy"] == [
        ("push", "completed", "accepted"),
        ("seen", "completed", "timeout"),
        ("missed", "completed", "then"),
        ("email", "completed", "accepted"),
        ("plan", "completed", "then"),
        ("sms", "completed", "accepted"),
    ]
    assert all(run["status"] == "completed" for run in ended.values())

    # What each person received matches their path, once each.
    def reached(name: str) -> set[str]:
        got = set()
        if sinks.state.received("push", to=tokens[name]):
            got.add("push")
        if emails_to(sinks, people[name]):
            got.add("email")
        if sinks.state.received("sms", to=people[name]["phone"]):
            got.add("sms")
        return got

    wanted = {"ana": {"push"}, "ben": {"push", "email"}, "cy": {"push", "email", "sms"}}
    await eventually(lambda: asyncio.sleep(0, {n: reached(n) for n in people} == wanted))
    assert len(sinks.state.received("sms", to=people["cy"]["phone"])) == 1
    assert len(emails_to(sinks, people["ben"])) == 1
    # Each send step is a notification of its own, with the run's step on it.
    sms_id = next(s["notification_id"] for s in ended["cy"]["steps"] if s["id"] == "sms")
    assert (await tenant.client.get(f"/v1/notifications/{sms_id}")).json()["channel"] == "sms"


async def test_a_digest_window_survives_its_worker_sigkilled_twice(
    stack: Stack, tenant: Tenant, sinks: Sinks
) -> None:
    """50 triggers for one recipient in a 10 s window, the core worker killed twice while
    it is open: one run carries all 50 into one email, the other 49 end ``digested``."""
    template = await tenant.template(
        "email",
        "{% for item in items %}<li>{{ item.n }}</li>{% endfor %}",
        subject="{{ count }} updates",
    )
    key = await put_flow(
        tenant,
        [
            {"id": "gather", "type": "digest", "window_seconds": 10},
            {"id": "mail", "type": "send", "channel": "email", "template": template},
        ],
    )
    user = await tenant.user()
    core = stack.processes["worker-core"]
    runs: list[str] = []

    async def kill_twice() -> None:
        # Killed once a few triggers are in, and again as soon as it is back.
        await eventually(lambda: asyncio.sleep(0, len(runs) >= 10), 30)
        for _ in range(2):
            core.kill()
            core.start()
            await asyncio.to_thread(stack.wait_ready, "worker-core")

    killer = asyncio.create_task(kill_twice())
    for burst in range(5):  # ten at a time, all well inside the 10 s window
        runs += await asyncio.gather(
            *(the_run(tenant, key, user, {"n": n}) for n in range(burst * 10, burst * 10 + 10))
        )
    await killer

    ended = await all_ended(tenant, runs, seconds=120)
    carriers = [run for run in ended if run["steps"][0]["outcome"] == "carried"]
    assert len(carriers) == 1 and carriers[0]["steps"][0]["count"] == 50
    digested = [run for run in ended if run["steps"][0]["outcome"] == "digested"]
    assert len(digested) == 49
    assert {run["steps"][0]["carrier_run_id"] for run in digested} == {carriers[0]["id"]}
    assert all(len(run["steps"]) == 1 for run in digested)  # they send nothing themselves
    await eventually(lambda: asyncio.sleep(0, len(emails_to(sinks, user)) >= 1))
    await asyncio.sleep(2)  # any second email would have come by now
    [mail] = emails_to(sinks, user)
    assert mail.subject == "50 updates"
    assert sorted(int(n) for n in re.findall(r"<li>(\d+)</li>", mail.body)) == list(range(50))


async def test_a_throttle_of_three_a_minute_sends_three_of_ten(
    stack: Stack, tenant: Tenant, sinks: Sinks
) -> None:
    template = await tenant.template("email", "Your code {{ n }}", subject="Code {{ n }}")
    key = await put_flow(
        tenant,
        [
            {"id": "limit", "type": "throttle", "limit": 3, "window_seconds": 60},
            {"id": "mail", "type": "send", "channel": "email", "template": template},
        ],
    )
    user = await tenant.user()
    # All ten at once: the limit holds however the runs race.
    runs = await asyncio.gather(*(the_run(tenant, key, user, {"n": n}) for n in range(10)))

    ended = await all_ended(tenant, list(runs))
    outcomes = sorted(run["steps"][0]["outcome"] for run in ended)
    assert outcomes == ["admitted"] * 3 + ["throttled"] * 7, outcomes
    assert all(run["status"] == "completed" for run in ended)
    throttled = [run for run in ended if run["steps"][0]["outcome"] == "throttled"]
    assert all(len(run["steps"]) == 1 for run in throttled)
    await eventually(lambda: asyncio.sleep(0, len(emails_to(sinks, user)) >= 3))
    await asyncio.sleep(2)
    assert len(emails_to(sinks, user)) == 3


async def test_a_run_waiting_in_a_delay_finishes_on_the_version_it_started_with(
    stack: Stack, tenant: Tenant, sinks: Sinks
) -> None:
    old = await tenant.template("email", "Old body", subject="Old flow")
    new = await tenant.template("email", "New body", subject="New flow")
    key = await put_flow(
        tenant,
        [
            {"id": "pause", "type": "delay", "seconds": 4},
            {"id": "mail", "type": "send", "channel": "email", "template": old},
        ],
    )
    user = await tenant.user()
    run_id = await the_run(tenant, key, user, {})

    async def in_its_delay() -> bool:
        steps = (await run_of(tenant.client, run_id))["steps"]
        return any(step["id"] == "pause" and step["status"] == "running" for step in steps)

    await eventually(in_its_delay)
    edited = await tenant.client.put(
        f"/v1/flows/{key}",
        json={"steps": [{"id": "mail", "type": "send", "channel": "email", "template": new}]},
    )
    assert edited.status_code == 200 and edited.json()["version"] == 2, edited.text
    later = await the_run(tenant, key, user, {})

    [waited, fresh] = await all_ended(tenant, [run_id, later])
    assert waited["version"] == 1 and [s["id"] for s in waited["steps"]] == ["pause", "mail"]
    assert fresh["version"] == 2 and [s["id"] for s in fresh["steps"]] == ["mail"]
    await eventually(lambda: asyncio.sleep(0, len(emails_to(sinks, user)) >= 2))
    assert sorted(mail.subject for mail in emails_to(sinks, user)) == ["New flow", "Old flow"]


async def test_2000_subscribers_through_kills_get_one_run_each_and_one_key_cancels_all(
    stack: Stack, tenant: Tenant, sinks: Sinks
) -> None:
    """The trigger's fan-out pages through the topic while the core worker (which runs
    the fan-out and every run) is SIGKILLed twice: each subscriber still gets exactly one
    run. The runs wait in an hour's delay; one cancellation key stops every one of them
    before its email."""
    users = await _users(stack.settings, tenant, 2000, f"f{uuid.uuid4().hex[:6]}")
    topic = await _topic(tenant, users)
    template = await tenant.template("email", "Renewal", subject="Renewal")
    key = await put_flow(
        tenant,
        [
            {"id": "pause", "type": "delay", "seconds": 3600},
            {"id": "mail", "type": "send", "channel": "email", "template": template},
        ],
    )
    cancellation_key = f"renewal-{uuid.uuid4()}"
    triggered = await trigger(
        tenant,
        key,
        {"topic": topic, "cancellation_key": cancellation_key, "idempotency_key": "renewal-1"},
    )
    trigger_id = uuid.UUID(triggered["trigger_id"])
    engine = make_engine(stack.settings, pool_size=1)

    async def runs_by(status: str | None = None) -> dict[str, int]:
        query = (
            select(FlowRun.user_id, func.count())
            .where(FlowRun.trigger_id == trigger_id)
            .group_by(FlowRun.user_id)
        )
        if status is not None:
            query = query.where(FlowRun.status == status)
        async with engine.connect() as conn:
            return {user_id: n for user_id, n in (await conn.execute(query)).all()}

    async def at_least(count: int, status: str | None = None) -> bool:
        return len(await runs_by(status)) >= count

    core = stack.processes["worker-core"]
    try:
        for threshold in (300, 1100):
            await eventually(lambda threshold=threshold: at_least(threshold), 120)
            core.kill()
            core.start()
            await asyncio.to_thread(stack.wait_ready, "worker-core")
        await eventually(lambda: at_least(2000), 180)
        started = await runs_by()
        assert sorted(started) == sorted(users) and set(started.values()) == {1}
        # The same trigger again starts nothing.
        again = await trigger(tenant, key, {"topic": topic, "idempotency_key": "renewal-1"})
        assert again["trigger_id"] == str(trigger_id)

        cancelled = await tenant.client.post(
            "/v1/flow-runs/cancel", json={"cancellation_key": cancellation_key}
        )
        assert cancelled.status_code == 202, cancelled.text
        assert cancelled.json() == {"cancelled": 2000}
        await eventually(lambda: at_least(2000, "cancelled"), 180)
        assert await runs_by("running") == {}
    finally:
        await engine.dispose()
    wanted = {f"{user_id}@example.com" for user_id in users}
    assert [mail.to for mail in sinks.state.received("email") if mail.to in wanted] == []
