"""Channel fallback: when the user cannot be reached on one channel, the next is tried,
and the event log says why and where it finally went."""

from __future__ import annotations

from devtools.sinks import Rule, Sinks
from tests.harness import Tenant, events, wait_for_status


async def _templates(tenant: Tenant, key: str) -> None:
    await tenant.template("push", "Push {{ code }}", "Code", key=key)
    await tenant.template("sms", "SMS {{ code }}", None, key=key)
    await tenant.template("email", "<p>Email {{ code }}</p>", "Code", key=key)


async def test_no_device_and_opted_out_fall_back_to_email(tenant: Tenant, sinks: Sinks) -> None:
    user = await tenant.user(preferences={"email": True, "sms": False, "push": True})
    await _templates(tenant, "code")

    nid = await tenant.send("push", user["id"], "code", {"code": "7"}, fallback=["sms", "email"])

    final = await wait_for_status(tenant.client, nid, timeout=30)
    assert (final["status"], final["provider"], final["channel"]) == ("sent", "smtp", "push")
    assert final["fallback"] == ["sms", "email"]
    log = await events(tenant.client, nid)
    assert [(e["status"], e["detail"]) for e in log] == [
        ("accepted", None),
        ("accepted", "cannot reach the user on push (user has no push device); falling back"),
        ("accepted", "cannot reach the user on sms (user opted out of sms); falling back"),
        ("sending", "falling back to email"),
        ("sent", "sent on email by smtp"),
    ]
    (mail,) = sinks.state.received("email", to=user["email"])
    assert "Email 7" in mail.body
    assert sinks.state.received("sms", to=user["phone"]) == []


async def test_a_permanent_send_failure_falls_back_to_the_next_channel(
    tenant: Tenant, sinks: Sinks
) -> None:
    user = await tenant.user()
    sinks.state.add_rule(Rule(match=user["phone"], always=400))
    await _templates(tenant, "code")

    nid = await tenant.send("sms", user["id"], "code", {"code": "8"}, fallback=["email"])

    final = await wait_for_status(tenant.client, nid, timeout=30)
    assert (final["status"], final["provider"]) == ("sent", "smtp")
    log = await events(tenant.client, nid)
    assert [e["status"] for e in log] == ["accepted", "sending", "sending", "sending", "sent"]
    assert "cannot reach the user on sms (twilio: HTTP 400" in log[2]["detail"]
    assert log[3]["detail"] == "falling back to email"
    assert len(sinks.state.received("email", to=user["email"])) == 1


async def test_unreachable_everywhere_is_suppressed_with_every_reason(tenant: Tenant) -> None:
    user = await tenant.user(preferences={"email": False, "sms": False, "push": True})
    await _templates(tenant, "code")

    nid = await tenant.send("push", user["id"], "code", {"code": "9"}, fallback=["sms", "email"])

    final = await wait_for_status(tenant.client, nid, timeout=30)
    assert final["status"] == "suppressed"
    last = (await events(tenant.client, nid))[-1]
    assert last["detail"] == (
        "push: user has no push device; sms: user opted out of sms; email: user opted out of email"
    )


async def test_a_fallback_must_be_other_channels_with_templates(tenant: Tenant) -> None:
    user = await tenant.user()
    await tenant.template("sms", "only sms", None, key="sms-only")
    body = {"user_id": user["id"], "template": "sms-only"}

    repeated = await tenant.client.post("/v1/notifications/sms", json={**body, "fallback": ["sms"]})
    assert repeated.status_code == 422, repeated.text
    assert repeated.json()["detail"][0]["loc"][:2] == ["body", "fallback"]

    twice = await tenant.client.post(
        "/v1/notifications", json={**body, "channel": "sms", "fallback": ["email", "email"]}
    )
    assert twice.status_code == 422

    no_template = await tenant.client.post(
        "/v1/notifications", json={**body, "channel": "sms", "fallback": ["email"]}
    )
    assert no_template.status_code == 422
    assert no_template.json()["detail"][0]["loc"] == ["body", "fallback"]
    assert "no email version" in no_template.json()["detail"][0]["msg"]
