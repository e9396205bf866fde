"""The chat channel and Vonage's delivery receipts on the real stack: a notification to a
user's Slack channel reaches Slack's fake; a Teams webhook answering 429 with
``Retry-After`` gets the message again after that time; chat addresses the API refuses;
a Vonage receipt with a good signature moves a notification, a forged one changes
nothing."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from devtools.sinks import Rule, Sinks
from herald import receipts_vonage as vonage
from tests.harness import Stack, Tenant, events, wait_for_status

ENDED = {"sent", "delivered", "undelivered", "failed", "cancelled", "suppressed"}


async def test_a_chat_notification_reaches_slack(tenant: Tenant, sinks: Sinks) -> None:
    channel = f"C{uuid.uuid4().hex[:10].upper()}"
    user = await tenant.user(chat={"slack": channel})
    assert user["chat"] == {"slack": channel}
    template = await tenant.template("chat", "Deploy {{ name }} finished <ok>", subject=None)

    nid = await tenant.send("chat", user["id"], template, {"name": "api"})
    body = await wait_for_status(tenant.client, nid, ENDED)

    assert body["status"] == "sent", body
    (got,) = sinks.state.received("chat", to=channel)
    assert got.raw["provider"] == "slack" and got.body == "Deploy api finished <ok>"
    assert got.idempotency_key == nid
    assert got.raw["headers"]["authorization"] == "Bearer xoxb-dev-token"
    assert body["provider_message_id"] == got.message_id


async def test_a_teams_webhook_answering_429_is_retried_after_its_retry_after(
    tenant: Tenant, sinks: Sinks
) -> None:
    hook = f"{sinks.http_url}/teams/webhookb2/{uuid.uuid4().hex}/IncomingWebhook/a/b"
    user = await tenant.user(chat={"teams": hook})
    sinks.state.add_rule(Rule(match=hook, fail_with=[429], retry_after=3))
    template = await tenant.template("chat", "Hello {{ name }}", subject=None)

    nid = await tenant.send("chat", user["id"], template, {"name": "Ada"})
    body = await wait_for_status(tenant.client, nid, ENDED)

    assert body["status"] == "sent", body
    tries = [r for r in sinks.state.requests if r.to == f"teams:{hook}"]
    assert [r.failure for r in tries] == [429, None]
    assert tries[1].at - tries[0].at >= 3.0
    (got,) = sinks.state.received("chat", to=hook)
    assert got.body == "Hello Ada"
    log = await events(tenant.client, nid)
    assert any("429" in (event["detail"] or "") for event in log if event["status"] == "retrying")


async def test_a_user_without_a_chat_address_is_suppressed(tenant: Tenant) -> None:
    user = await tenant.user()
    template = await tenant.template("chat", "Hi", subject=None)
    nid = await tenant.send("chat", user["id"], template)
    body = await wait_for_status(tenant.client, nid, ENDED)
    assert body["status"] == "suppressed" and "chat address" in (body["last_error"] or "")


@pytest.mark.parametrize(
    ("chat", "field"),
    [
        ({"slack": "C1\u0000"}, "chat.slack"),
        ({"slack": "C" * 10_000}, "chat.slack"),
        ({"teams": "https://a.webhook.office.com/" + "x" * 5000}, "chat.teams"),
        ({"teams": "http://contoso.webhook.office.com/x"}, "chat.teams"),
        ({"teams": "https://127.0.0.1/webhook"}, "chat.teams"),
        ({"discord": "https://evil.example/api/webhooks/1/2"}, "chat.discord"),
        ({"slack": "C1", "discord": "https://discord.com/api/webhooks/1/2"}, "chat"),
        ({"slack": 5}, "chat"),
        ("C123", "chat"),
    ],
)
async def test_hostile_chat_addresses_are_422_naming_the_field(
    tenant: Tenant, chat: object, field: str
) -> None:
    for method, path, body in [
        ("POST", "/v1/users", {"id": f"u-{uuid.uuid4().hex[:8]}", "chat": chat}),
        ("PATCH", f"/v1/users/{(await tenant.user())['id']}", {"chat": chat}),
    ]:
        response = await tenant.client.request(method, path, json=body)
        assert response.status_code == 422, response.text
        text = response.text
        assert '"chat"' in text and (field == "chat" or field in text)


async def test_a_patch_can_clear_the_chat_address(tenant: Tenant) -> None:
    user = await tenant.user(chat={"slack": "C42"})
    changed = await tenant.client.patch(f"/v1/users/{user['id']}", json={"chat": None})
    assert changed.status_code == 200 and changed.json()["chat"] is None
    assert changed.json()["email"] == user["email"]


async def _sms(tenant: Tenant) -> tuple[str, str]:
    user = await tenant.user()
    template = await tenant.template("sms", "Code {{ code }}", subject=None)
    nid = await tenant.send("sms", user["id"], template, {"code": "4711"})
    body = await wait_for_status(tenant.client, nid, ENDED)
    return nid, str(body["provider_message_id"])


def _dlr(message_id: str, status: str, code: str = "0", ref: str = "") -> dict[str, str]:
    return {
        "client-ref": ref,
        "msisdn": "447700900123",
        "to": "Herald",
        "network-code": "23410",
        "messageId": message_id,
        "price": "0.03330000",
        "status": status,
        "scts": "2612050400",
        "err-code": code,
        "api-key": "devkey01",
        "message-timestamp": "2026-12-05 04:00:00",
        "timestamp": str(int(time.time())),
        "nonce": str(uuid.uuid4()),
    }


async def test_vonage_receipts_signed_move_the_notification_forged_change_nothing(
    tenant: Tenant, stack: Stack
) -> None:
    nid, message_id = await _sms(tenant)
    secret = vonage.DEVELOPMENT_SIGNATURE_SECRET
    path = vonage.VONAGE_RECEIPT_PATH
    async with httpx.AsyncClient(base_url=stack.api_url) as client:
        forged = _dlr(message_id, "failed", "6", nid)
        forged["sig"] = vonage.sign(forged, "not the secret")
        assert (await client.post(path, data=forged)).status_code == 403
        unsigned = _dlr(message_id, "failed", "6", nid)
        assert (await client.get(path, params=unsigned)).status_code == 403
        assert (await tenant.client.get(f"/v1/notifications/{nid}")).json()["status"] == "sent"

        good = _dlr(message_id, "failed", "6", nid)
        good["sig"] = vonage.sign(good, secret, "md5hash")
        answer = await client.post(path, json=good)
        assert answer.status_code == 204, answer.text

    body = await wait_for_status(tenant.client, nid, {"undelivered"})
    assert body["last_error"] == "vonage failed (error 6)"


async def test_a_tenants_vonage_integration_sends_and_its_receipts_come_back(
    tenant: Tenant, other_tenant: Tenant, sinks: Sinks, stack: Stack
) -> None:
    config = {
        "api_key": "devkey01",
        "api_secret": "dev-vonage-secret",
        "from": "Herald",
        "signature_secret": "tenant-a-vonage-signature",
        "base_url": f"{sinks.http_url}/vonage",
    }
    made = await tenant.client.post(
        "/v1/integrations", json={"channel": "sms", "provider": "vonage", "config": config}
    )
    assert made.status_code == 201, made.text
    # Workers read a tenant's integrations again after this long (an earlier test's send
    # may have had them read none).
    await asyncio.sleep(stack.settings.integrations_cache_seconds + 0.5)
    user = await tenant.user()
    # The fake reports "delivered" (signed with the deployment's development secret).
    sinks.state.add_rule(Rule(match=user["phone"], callbacks=["delivered"]))
    template = await tenant.template("sms", "Code {{ code }}", subject=None)
    nid = await tenant.send("sms", user["id"], template, {"code": "4711"})

    body = await wait_for_status(tenant.client, nid, {"delivered"}, timeout=30)

    (got,) = sinks.state.received("sms", to=user["phone"])
    assert got.raw["provider"] == "vonage" and got.idempotency_key == nid
    assert body["provider_message_id"] == got.message_id

    # Signed with the tenant's own secret: good for its notifications, not another's.
    theirs, _ = await _sms(other_tenant)
    path = vonage.VONAGE_RECEIPT_PATH
    async with httpx.AsyncClient(base_url=stack.api_url) as client:
        for target, expected in [(theirs, 403), (nid, 204)]:
            dlr = _dlr("0A00000000000001", "accepted", ref=target)
            dlr["sig"] = vonage.sign(dlr, config["signature_secret"], "sha512")
            answer = await client.post(path, data=dlr)
            assert answer.status_code == expected, answer.text
    assert (await other_tenant.client.get(f"/v1/notifications/{theirs}")).json()["status"] == "sent"


async def test_a_tenants_slack_integration_and_webhooks_side_by_side(
    tenant: Tenant, sinks: Sinks, stack: Stack
) -> None:
    made = await tenant.client.post(
        "/v1/integrations",
        json={
            "channel": "chat",
            "provider": "slack",
            "name": "team-slack",
            "config": {"bot_token": "xoxb-dev-token", "base_url": f"{sinks.http_url}/slack"},
        },
    )
    assert made.status_code == 201, made.text
    await asyncio.sleep(stack.settings.integrations_cache_seconds + 0.5)
    channel = f"C{uuid.uuid4().hex[:10].upper()}"
    hook = f"{sinks.http_url}/discord/api/webhooks/{uuid.uuid4().int % 10**18}/tok"
    slack_user = await tenant.user(chat={"slack": channel})
    discord_user = await tenant.user(chat={"discord": hook})
    template = await tenant.template("chat", "Hi {{ name }}", subject=None)

    via_slack = await tenant.send("chat", slack_user["id"], template, {"name": "S"})
    via_discord = await tenant.send("chat", discord_user["id"], template, {"name": "D"})

    assert (await wait_for_status(tenant.client, via_slack, ENDED))["status"] == "sent"
    assert (await wait_for_status(tenant.client, via_discord, ENDED))["status"] == "sent"
    (slack_message,) = sinks.state.received("chat", to=channel)
    (discord_message,) = sinks.state.received("chat", to=hook)
    assert slack_message.body == "Hi S" and discord_message.body == "Hi D"
    assert discord_message.raw["provider"] == "discord"
    log = await events(tenant.client, via_slack)
    assert any("team-slack" in (e["detail"] or "") for e in log if e["status"] == "sent"), log
