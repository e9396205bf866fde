"""Delivery receipts on the real stack: Twilio status callbacks (signed as Twilio signs
them, sent by the SMS sink or by the test acting as Twilio), email bounces as real
RFC 3464 DSNs to ``herald bounces``, and the client's own receipts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devtools.provider_reports import build_dsn, send_report, twilio_callback
from devtools.sinks import Rule, Sinks
from herald.bounce_addresses import bounce_address
from herald.settings import Settings
from tests.harness import Stack, Tenant, events, wait_for_status

ENDED = {"sent", "delivered", "undelivered", "failed", "cancelled", "suppressed"}


@pytest.fixture
def bounce_relay(sinks: Sinks, settings: Settings, stack: Stack) -> Iterator[tuple[str, int]]:
    """The SMTP sink sends its DSNs to this run's bounce server."""
    stack.wait_ready("bounces")
    relay = ("127.0.0.1", settings.bounce_smtp_port)
    sinks.state.bounce_relay = relay
    yield relay
    sinks.state.bounce_relay = None


async def _sms(tenant: Tenant, sinks: Sinks, rule: Rule | None = None) -> tuple[str, str]:
    """Send an SMS (the sink following ``rule``); its notification id and Twilio sid."""
    user = await tenant.user()
    if rule is not None:
        rule.match = user["phone"]
        sinks.state.add_rule(rule)
    template = await tenant.template("sms", "Code {{ code }}", subject=None)
    nid = await tenant.send("sms", user["id"], template, {"code": "4711"})
    body = await wait_for_status(tenant.client, nid, ENDED)
    return nid, str(body["provider_message_id"] or "")


async def _callback(
    stack: Stack, sid: str, status: str, token: str | None = None, **change: str
) -> httpx.Response:
    """POST a status callback for ``sid`` as Twilio would (signed with ``token``)."""
    url = f"{stack.settings.public_url}/v1/providers/twilio/status"
    form, headers = twilio_callback(
        url,
        token or stack.settings.sms_auth_token.get_secret_value(),
        sid=sid,
        account_sid=stack.settings.sms_account_sid,
        to="+15550100123",
        sender=stack.settings.sms_from,
        status=status,
    )
    async with httpx.AsyncClient(base_url=stack.api_url) as client:
        return await client.post(
            "/v1/providers/twilio/status", data={**form, **change}, headers=headers
        )


def _receipts(log: list[dict[str, Any]]) -> list[str]:
    return [event["detail"] for event in log if (event["detail"] or "").startswith("twilio")]


async def test_an_sms_is_delivered_when_twilio_says_so(tenant: Tenant, sinks: Sinks) -> None:
    nid, _ = await _sms(tenant, sinks, Rule(match="", callbacks=["sent", "delivered"]))

    body = await wait_for_status(tenant.client, nid, {"delivered"})

    assert body["last_error"] is None
    log = await events(tenant.client, nid)
    assert [event["status"] for event in log if event["status"] == "delivered"] == ["delivered"]
    assert "twilio reports sent" in _receipts(log)


async def test_an_undelivered_sms_keeps_twilios_error_code(tenant: Tenant, sinks: Sinks) -> None:
    nid, _ = await _sms(tenant, sinks, Rule(match="", callbacks=["sent", "undelivered:30003"]))

    body = await wait_for_status(tenant.client, nid, {"undelivered"})

    assert body["last_error"] == "twilio undelivered: error 30003"


async def test_a_callback_before_herald_records_sent_is_applied_once_it_does(
    tenant: Tenant, sinks: Sinks
) -> None:
    """Twilio can report before its answer to the send reaches Herald."""
    nid, _ = await _sms(
        tenant, sinks, Rule(match="", callbacks=["delivered"], callbacks_first=True)
    )

    body = await wait_for_status(tenant.client, nid, {"delivered"})

    assert body["status"] == "delivered"
    assert "twilio reports delivered" in _receipts(await events(tenant.client, nid))


async def test_a_forged_or_missing_signature_is_refused_and_changes_nothing(
    tenant: Tenant, sinks: Sinks, stack: Stack
) -> None:
    nid, sid = await _sms(tenant, sinks)
    before = await events(tenant.client, nid)

    forged = await _callback(stack, sid, "delivered", token="not-the-auth-token")
    tampered = await _callback(stack, sid, "sent", MessageStatus="delivered")
    async with httpx.AsyncClient(base_url=stack.api_url) as client:
        unsigned = await client.post(
            "/v1/providers/twilio/status", data={"MessageSid": sid, "MessageStatus": "delivered"}
        )

    assert (forged.status_code, tampered.status_code, unsigned.status_code) == (403, 403, 403)
    assert (await tenant.client.get(f"/v1/notifications/{nid}")).json()["status"] == "sent"
    assert await events(tenant.client, nid) == before


async def test_callbacks_replayed_and_out_of_order_end_delivered(
    tenant: Tenant, sinks: Sinks, stack: Stack
) -> None:
    nid, sid = await _sms(tenant, sinks)

    for status in ("delivered", "sent", "queued", "delivered", "undelivered:30003", "sent"):
        response = await _callback(stack, sid, status)
        assert response.status_code == 204, response.text

    body = await tenant.client.get(f"/v1/notifications/{nid}")
    assert body.json()["status"] == "delivered"
    assert body.json()["last_error"] is None
    reports = _receipts(await events(tenant.client, nid))
    # Each report once, however often Twilio sent it.
    assert sorted(reports) == sorted(
        [
            "twilio reports delivered",
            "twilio reports sent",
            "twilio reports queued",
            "twilio reports undelivered (error 30003)",
        ]
    )


async def _receipt_changes(metrics_url: str, channel: str) -> dict[tuple[str, str], float]:
    """A process's ``herald_receipt_changes_total`` for ``channel``, by (from, to)."""
    async with httpx.AsyncClient() as client:
        exposition = (await client.get(metrics_url)).text
    return {
        (sample.labels["from_status"], sample.labels["to_status"]): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "herald_receipt_changes_total" and sample.labels["channel"] == channel
    }


def _grown(before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]) -> dict:
    return {move: n - before.get(move, 0.0) for move, n in after.items() if n != before.get(move)}


async def test_the_receipt_counter_counts_a_change_once_however_often_it_is_reported(
    tenant: Tenant, sinks: Sinks, stack: Stack
) -> None:
    """What the delivery-success alert reads (``herald_receipt_changes_total``)."""
    nid, sid = await _sms(tenant, sinks)
    metrics = f"{stack.api_url}/metrics"
    before = await _receipt_changes(metrics, "sms")

    for status in ("undelivered:30003", "undelivered:30003", "queued", "failed:30005"):
        assert (await _callback(stack, sid, status)).status_code == 204
    undelivered = await _receipt_changes(metrics, "sms")
    for _ in range(2):
        assert (await _callback(stack, sid, "delivered")).status_code == 204

    assert _grown(before, undelivered) == {("sent", "undelivered"): 1.0}
    assert _grown(undelivered, await _receipt_changes(metrics, "sms")) == {
        ("undelivered", "delivered"): 1.0
    }
    assert (await tenant.client.get(f"/v1/notifications/{nid}")).json()["status"] == "delivered"


async def test_a_callback_for_an_unknown_message_is_accepted_and_changes_nothing(
    stack: Stack,
) -> None:
    response = await _callback(stack, f"SM{uuid.uuid4().hex}", "delivered")

    assert response.status_code == 204


# --- Email bounces ---------------------------------------------------------------------


async def _email(tenant: Tenant, sinks: Sinks, rule: Rule | None = None) -> tuple[str, str]:
    user = await tenant.user()
    if rule is not None:
        rule.match = user["email"]
        sinks.state.add_rule(rule)
    template = await tenant.template("email", "<p>Hello {{ name }}</p>")
    nid = await tenant.send("email", user["id"], template, {"name": "Ada"})
    await wait_for_status(tenant.client, nid, ENDED)
    return nid, str(user["email"])


async def test_an_email_the_recipients_server_bounces_ends_undelivered(
    tenant: Tenant, sinks: Sinks, stack: Stack, bounce_relay: tuple[str, int]
) -> None:
    bounces = f"http://127.0.0.1:{stack.metrics_ports['bounces']}/metrics"
    counted = await _receipt_changes(bounces, "email")
    nid, address = await _email(tenant, sinks, Rule(match="", dsn="5.1.1"))

    body = await wait_for_status(tenant.client, nid, {"undelivered"})

    # The bounce server counts just after its write; the count follows within moments.
    for _ in range(50):
        grown = _grown(counted, await _receipt_changes(bounces, "email"))
        if grown:
            break
        await asyncio.sleep(0.1)
    assert grown == {("sent", "undelivered"): 1.0}
    assert body["last_error"].startswith("5.1.1 ")
    assert "User unknown" in body["last_error"]
    # The bounce came back to the notification's own VERP address; From is unchanged.
    (received,) = sinks.state.received("email", to=address)
    assert received.raw["From"] == "Herald <herald@localhost>"


async def test_a_delayed_email_stays_sent_and_the_delay_is_logged(
    tenant: Tenant, sinks: Sinks, bounce_relay: tuple[str, int]
) -> None:
    nid, _ = await _email(tenant, sinks, Rule(match="", dsn="4.4.1"))

    for _ in range(100):
        log = await events(tenant.client, nid)
        if any((event["detail"] or "").startswith("delivery delayed: 4.4.1") for event in log):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"no delay logged: {log}")

    assert (await tenant.client.get(f"/v1/notifications/{nid}")).json()["status"] == "sent"


async def _deliver(relay: tuple[str, int], to: str, message: EmailMessage | bytes) -> None:
    content = message if isinstance(message, bytes) else message.as_bytes()
    await send_report(relay, to, content)


async def test_mail_that_is_not_a_dsn_for_a_herald_address_is_refused(
    tenant: Tenant, sinks: Sinks, bounce_relay: tuple[str, int], settings: Settings
) -> None:
    nid, address = await _email(tenant, sinks)
    ours = bounce_address(settings, uuid.UUID(nid))
    mac = ours.split("@")[0].rpartition(".")[2]
    dsn = build_dsn(
        bounce_to=ours, recipient=address, status="5.1.1", original_headers=b"Subject: x\r\n"
    )
    plain = EmailMessage()
    plain["From"], plain["To"], plain["Subject"] = "someone@example.com", ours, "hello"
    plain.set_content("not a delivery status notification")
    success = build_dsn(
        bounce_to=ours, recipient=address, status="2.0.0", original_headers=b"Subject: x\r\n"
    )

    refusals = []
    for to, message in (
        ("someone@localhost", dsn),
        (ours.replace("@localhost", "@elsewhere.example"), dsn),
        (f"bounces+{uuid.uuid4()}.{mac}@localhost", dsn),
        # Knowing the id is not enough: unsigned, or signed for another notification.
        (f"bounces+{nid}@localhost", dsn),
        (f"bounces+{nid}.{mac[::-1]}@localhost", dsn),
        (ours, plain),
        (ours, success),
    ):
        with pytest.raises(aiosmtplib.SMTPException) as refused:
            await _deliver(bounce_relay, to, message)
        refusals.append(str(refused.value))

    assert all("550" in refusal for refusal in refusals), refusals
    assert (await tenant.client.get(f"/v1/notifications/{nid}")).json()["status"] == "sent"


# --- Receipts from the client ------------------------------------------------------------


async def _push(tenant: Tenant) -> str:
    user = await tenant.user()
    await tenant.device(user["id"])
    template = await tenant.template("push", "You have mail", subject="Herald")
    nid = await tenant.send("push", user["id"], template)
    await wait_for_status(tenant.client, nid, ENDED)
    return nid


async def test_the_client_reports_a_push_delivered(tenant: Tenant) -> None:
    nid = await _push(tenant)

    answer = await tenant.client.post(
        f"/v1/notifications/{nid}/receipt", json={"status": "delivered"}
    )
    again = await tenant.client.post(
        f"/v1/notifications/{nid}/receipt", json={"status": "delivered"}
    )
    late = await tenant.client.post(
        f"/v1/notifications/{nid}/receipt", json={"status": "undelivered", "reason": "app gone"}
    )

    assert (answer.status_code, again.status_code, late.status_code) == (202, 202, 202)
    assert answer.json()["status"] == "delivered"
    assert late.json()["status"] == "delivered"  # delivered is never overwritten
    log = await events(tenant.client, nid)
    assert [event["detail"] for event in log if event["status"] == "delivered"] == [
        "client reports delivered"
    ]


async def test_the_client_reports_a_push_undelivered_with_its_reason(tenant: Tenant) -> None:
    nid = await _push(tenant)

    answer = await tenant.client.post(
        f"/v1/notifications/{nid}/receipt",
        json={"status": "undelivered", "reason": "device unregistered"},
    )

    assert answer.status_code == 202
    assert answer.json()["status"] == "undelivered"
    assert answer.json()["last_error"] == "device unregistered"


async def test_receipts_for_unknown_unsent_or_foreign_notifications_are_refused(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    nid = await _push(tenant)
    user = await tenant.user()  # no device: the push is suppressed
    template = await tenant.template("push", "Hi", subject="Herald")
    suppressed = await tenant.send("push", user["id"], template)
    await wait_for_status(tenant.client, suppressed, {"suppressed"})
    delivered = {"status": "delivered"}

    unknown = await tenant.client.post(f"/v1/notifications/{uuid.uuid4()}/receipt", json=delivered)
    foreign = await other_tenant.client.post(f"/v1/notifications/{nid}/receipt", json=delivered)
    unsent = await tenant.client.post(f"/v1/notifications/{suppressed}/receipt", json=delivered)
    invalid = await tenant.client.post(f"/v1/notifications/{nid}/receipt", json={"status": "read"})

    assert (unknown.status_code, foreign.status_code) == (404, 404)
    assert unsent.status_code == 409
    assert invalid.status_code == 422
    assert invalid.json()["detail"][0]["loc"] == ["body", "status"]


async def test_confirm_within_seconds_needs_a_fallback_and_a_positive_time(tenant: Tenant) -> None:
    user = await tenant.user()
    template = await tenant.template("push", "Hi", subject="Herald")
    await tenant.template("sms", "Hi", subject=None, key=template)
    base = {"channel": "push", "user_id": user["id"], "template": template}

    alone = await tenant.client.post(
        "/v1/notifications", json={**base, "confirm_within_seconds": 5}
    )
    zero = await tenant.client.post(
        "/v1/notifications", json={**base, "fallback": ["sms"], "confirm_within_seconds": 0}
    )
    fine = await tenant.client.post(
        "/v1/notifications", json={**base, "fallback": ["sms"], "confirm_within_seconds": 5}
    )

    assert (alone.status_code, zero.status_code, fine.status_code) == (422, 422, 202)
    assert alone.json()["detail"][0]["loc"] == ["body", "confirm_within_seconds"]
    assert zero.json()["detail"][0]["loc"] == ["body", "confirm_within_seconds"]
