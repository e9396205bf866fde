"""The status lifecycle of NotificationWorkflow, driven through the real API, workers,
Temporal and provider sinks: retries, permanent failures, suppression, cancel, resend."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import select

from devtools.sinks import Rule, Sinks
from herald import db, submission
from herald.contracts import Channel, NotificationRequest
from herald.db import make_engine
from herald.settings import Settings
from herald.temporal import connect
from tests.harness import Tenant, events, wait_for_status


def statuses(log: list[dict[str, object]]) -> list[object]:
    return [entry["status"] for entry in log]


async def test_transient_failures_retry_until_sent(tenant: Tenant, sinks: Sinks) -> None:
    user = await tenant.user()
    sinks.state.add_rule(Rule(match=user["phone"], fail_with=[503, 503]))
    key = await tenant.template("sms", "Hello {{ name }}", None)

    nid = await tenant.send("sms", user["id"], key, {"name": "Ada"})

    final = await wait_for_status(tenant.client, nid)
    assert final["status"] == "sent"
    assert final["attempts"] == 3
    log = await events(tenant.client, nid)
    assert statuses(log) == ["accepted", "sending", "retrying", "retrying", "sent"]
    assert [e["attempt"] for e in log if e["status"] == "retrying"] == [1, 2]
    assert "HTTP 503" in str(log[2]["detail"])
    assert len(sinks.state.received("sms", to=user["phone"])) == 1


async def test_permanent_failure_stops_after_one_attempt(tenant: Tenant, sinks: Sinks) -> None:
    user = await tenant.user()
    sinks.state.add_rule(Rule(match=user["phone"], always=400))
    key = await tenant.template("sms", "Hello", None)

    nid = await tenant.send("sms", user["id"], key)

    final = await wait_for_status(tenant.client, nid)
    assert (final["status"], final["attempts"]) == ("failed", 1)
    assert "HTTP 400" in final["last_error"]
    assert statuses(await events(tenant.client, nid)) == ["accepted", "sending", "failed"]
    assert sinks.state.attempts[user["phone"]] == 1


async def test_always_failing_provider_fails_after_max_attempts(
    tenant: Tenant, sinks: Sinks
) -> None:
    user = await tenant.user()
    sinks.state.add_rule(Rule(match=user["email"], always="451 4.3.0 mailbox busy"))
    key = await tenant.template("email", "<p>Hi</p>", "Hi")

    nid = await tenant.send("email", user["id"], key)

    final = await wait_for_status(tenant.client, nid)
    max_attempts = 3  # HERALD_MAX_ATTEMPTS default
    assert (final["status"], final["attempts"]) == ("failed", max_attempts)
    assert "451" in final["last_error"]
    log = statuses(await events(tenant.client, nid))
    assert log == ["accepted", "sending", "retrying", "retrying", "failed"]
    assert sinks.state.attempts[user["email"]] == max_attempts
    assert sinks.state.received("email", to=user["email"]) == []


async def test_opted_out_user_is_suppressed_without_a_provider_call(
    tenant: Tenant, sinks: Sinks
) -> None:
    user = await tenant.user(preferences={"email": False, "sms": True, "push": True})
    key = await tenant.template("email", "<p>Hi</p>", "Hi")

    nid = await tenant.send("email", user["id"], key)

    final = await wait_for_status(tenant.client, nid)
    assert final["status"] == "suppressed"
    log = await events(tenant.client, nid)
    assert statuses(log) == ["accepted", "suppressed"]
    assert "opted out of email" in str(log[-1]["detail"])
    assert user["email"] not in sinks.state.attempts


async def test_unknown_user_and_missing_device_are_suppressed(tenant: Tenant) -> None:
    user = await tenant.user()
    key = await tenant.template("push", "Hi", "Hi")

    no_device = await tenant.send("push", user["id"], key)
    unknown = await tenant.send("push", "nobody-by-that-id", key)

    for nid, reason in ((no_device, "no push device"), (unknown, "unknown user")):
        assert (await wait_for_status(tenant.client, nid))["status"] == "suppressed"
        assert reason in str((await events(tenant.client, nid))[-1]["detail"])


async def test_missing_template_variable_fails_naming_it(tenant: Tenant, sinks: Sinks) -> None:
    user = await tenant.user()
    # A missing top-level variable is refused at the door; a missing nested key is found
    # only when the template renders.
    key = await tenant.template("email", "<p>Hi {{ person.first_name }}</p>", "Hello")

    nid = await tenant.send("email", user["id"], key, {"person": {"name": "Ada"}})

    final = await wait_for_status(tenant.client, nid)
    assert final["status"] == "failed"
    assert "first_name" in final["last_error"]
    assert "missing variable" in final["last_error"]
    assert statuses(await events(tenant.client, nid)) == ["accepted", "failed"]
    assert user["email"] not in sinks.state.attempts


async def test_cancel_during_retry_backoff_stops_further_attempts(
    tenant: Tenant, sinks: Sinks
) -> None:
    user = await tenant.user()
    # The provider asks us to come back in 30 s: the notification waits in backoff.
    sinks.state.add_rule(Rule(match=user["phone"], always=429, retry_after=30))
    key = await tenant.template("sms", "Hello", None)
    nid = await tenant.send("sms", user["id"], key)
    await wait_for_status(tenant.client, nid, {"retrying"})

    response = await tenant.client.post(f"/v1/notifications/{nid}/cancel")
    assert response.status_code == 202, response.text

    final = await wait_for_status(tenant.client, nid, timeout=60)
    assert final["status"] == "cancelled"
    assert statuses(await events(tenant.client, nid))[-1] == "cancelled"
    await asyncio.sleep(2)
    assert sinks.state.attempts[user["phone"]] == 1
    again = await tenant.client.post(f"/v1/notifications/{nid}/cancel")
    assert again.status_code == 409
    assert "already cancelled" in again.json()["detail"]


async def test_scheduled_notification_can_be_cancelled_before_it_is_sent(
    tenant: Tenant, sinks: Sinks
) -> None:
    user = await tenant.user()
    key = await tenant.template("sms", "Later", None)
    nid = await tenant.send("sms", user["id"], key, send_at="2099-01-01T00:00:00Z")
    await wait_for_status(tenant.client, nid, {"scheduled"})

    assert (await tenant.client.post(f"/v1/notifications/{nid}/cancel")).status_code == 202

    assert (await wait_for_status(tenant.client, nid))["status"] == "cancelled"
    assert user["phone"] not in sinks.state.attempts


async def test_resend_of_a_failed_notification_sends_it(tenant: Tenant, sinks: Sinks) -> None:
    user = await tenant.user()
    outage = sinks.state.add_rule(Rule(match=user["phone"], always=503))
    key = await tenant.template("sms", "Hello {{ name }}", None)
    nid = await tenant.send("sms", user["id"], key, {"name": "Ada"})
    assert (await wait_for_status(tenant.client, nid))["status"] == "failed"
    sinks.state.rules.remove(outage)

    response = await tenant.client.post(f"/v1/notifications/{nid}/resend")
    assert response.status_code == 202, response.text

    final = await wait_for_status(tenant.client, nid, {"sent"})
    assert final["cycle"] == 2
    assert final["last_error"] is None
    log = await events(tenant.client, nid)
    assert [(e["cycle"], e["status"]) for e in log][-3:] == [
        (2, "accepted"),
        (2, "sending"),
        (2, "sent"),
    ]
    (delivered,) = sinks.state.received("sms", to=user["phone"])
    assert delivered.idempotency_key == f"{nid}-2"


async def test_resend_of_an_unfinished_notification_is_a_conflict(tenant: Tenant) -> None:
    user = await tenant.user()
    key = await tenant.template("sms", "Later", None)
    nid = await tenant.send("sms", user["id"], key, send_at="2099-01-01T00:00:00Z")
    await wait_for_status(tenant.client, nid, {"scheduled"})

    response = await tenant.client.post(f"/v1/notifications/{nid}/resend")

    assert response.status_code == 409
    assert "still scheduled" in response.json()["detail"]
    await tenant.client.post(f"/v1/notifications/{nid}/cancel")


async def test_workflow_logs_accepted_when_the_api_crashed_before_writing_it(
    tenant: Tenant, sinks: Sinks, settings: Settings
) -> None:
    """The API starts the workflow, then writes the row; a crash between the two leaves
    only the workflow, whose first step writes the row and ``accepted`` itself."""
    user = await tenant.user()
    key = await tenant.template("email", "<p>Hi {{ name }}</p>")
    engine = make_engine(settings, pool_size=1)
    client = await connect(settings)
    try:
        async with engine.connect() as conn:
            tenant_id = (
                await conn.execute(select(db.Tenant.id).where(db.Tenant.name == tenant.name))
            ).scalar_one()
        notification = submission.build_input(
            settings,
            notification_id=uuid.uuid4(),
            tenant_id=tenant_id,
            tenant=tenant.name,
            request=NotificationRequest(
                channel=Channel.email, user_id=user["id"], template=key, data={"name": "Ada"}
            ),
        )
        # What the API does up to the crash: the durable start, not the write.
        assert await submission.start_notification(client, settings, notification)
    finally:
        await engine.dispose()

    nid = str(notification.notification_id)
    final = await wait_for_status(tenant.client, nid)
    assert final["status"] == "sent"
    assert statuses(await events(tenant.client, nid)) == ["accepted", "sending", "sent"]
    assert len(sinks.state.received("email", to=user["email"])) == 1
