"""The email APIs' delivery events as receipts: verified (SendGrid's ECDSA signature,
Mailgun's HMAC, Postmark's basic auth), mapped onto delivered/undelivered, applied to the
notification they name on the real stack, and refused with 403 changing nothing when
forged."""

from __future__ import annotations

import base64
import json
import time
import uuid

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from devtools.fakes.email_apis import FakeCredentials
from devtools.fakes.email_events import (
    mailgun_event,
    mailgun_failed,
    postmark_auth,
    postmark_bounce,
    sendgrid_bounce,
    sendgrid_events,
)
from devtools.sinks import Sinks
from herald import receipts_email as email
from herald.contracts import Status
from herald.settings import Settings
from tests.harness import Stack, Tenant, events, wait_for_status

DEV = email.deployment_secrets(Settings(env="development"))
NID = str(uuid.uuid4())

# --- verification (no services) -----------------------------------------------------


@pytest.mark.fast
def test_a_sendgrid_batch_signed_with_the_key_verifies_and_any_change_does_not() -> None:
    body, headers = sendgrid_events([sendgrid_bounce(NID, "ada@example.com")])
    signature = headers["X-Twilio-Email-Event-Webhook-Signature"]
    stamp = headers["X-Twilio-Email-Event-Webhook-Timestamp"]

    email.verify_sendgrid(DEV, body, signature, stamp)
    for forged in (
        (body.replace(b"bounce", b"delivered"), signature, stamp),
        (body, signature, str(int(stamp) + 1)),
        (body, None, stamp),
        (body, "not base64!", stamp),
        (body, base64.b64encode(b"\x00" * 70).decode(), stamp),
    ):
        with pytest.raises(email.Forged):
            email.verify_sendgrid(DEV, *forged)
    other = ec.generate_private_key(ec.SECP256R1())
    body, headers = sendgrid_events([sendgrid_bounce(NID, "ada@example.com")], key=other)
    with pytest.raises(email.Forged):
        email.verify_sendgrid(
            DEV,
            body,
            headers["X-Twilio-Email-Event-Webhook-Signature"],
            headers["X-Twilio-Email-Event-Webhook-Timestamp"],
        )


@pytest.mark.fast
def test_an_old_signed_event_is_refused_as_a_replay() -> None:
    old = int(time.time()) - email.MAX_AGE_SECONDS - 60
    body, headers = sendgrid_events([sendgrid_bounce(NID, "ada@example.com")], timestamp=old)
    with pytest.raises(email.Forged, match="too old"):
        email.verify_sendgrid(
            DEV,
            body,
            headers["X-Twilio-Email-Event-Webhook-Signature"],
            headers["X-Twilio-Email-Event-Webhook-Timestamp"],
        )
    with pytest.raises(email.Forged, match="too old"):
        email.verify_mailgun(DEV, mailgun_event(mailgun_failed(NID, "a@b.co"), timestamp=old))


@pytest.mark.fast
def test_production_without_configured_secrets_trusts_nothing() -> None:
    secrets = email.deployment_secrets(Settings().model_copy(update={"env": "production"}))
    body, headers = sendgrid_events([sendgrid_bounce(NID, "ada@example.com")])
    with pytest.raises(email.NotConfigured):
        email.verify_sendgrid(
            secrets,
            body,
            headers["X-Twilio-Email-Event-Webhook-Signature"],
            headers["X-Twilio-Email-Event-Webhook-Timestamp"],
        )
    with pytest.raises(email.NotConfigured):
        email.verify_mailgun(secrets, mailgun_event(mailgun_failed(NID, "a@b.co")))
    with pytest.raises(email.NotConfigured):
        email.verify_postmark(secrets, postmark_auth()["Authorization"])


@pytest.mark.fast
def test_mailgun_and_postmark_verification() -> None:
    signed = mailgun_event(mailgun_failed(NID, "a@b.co"))
    email.verify_mailgun(DEV, signed)
    signed["signature"]["token"] = "x" + signed["signature"]["token"][1:]
    with pytest.raises(email.Forged):
        email.verify_mailgun(DEV, signed)
    with pytest.raises(email.Forged):
        email.verify_mailgun(DEV, {"event-data": {}})

    email.verify_postmark(DEV, postmark_auth()["Authorization"])
    for wrong in (None, "Basic", "Basic !!!", postmark_auth(("herald", "guess"))["Authorization"]):
        with pytest.raises(email.Forged):
            email.verify_postmark(DEV, wrong)


@pytest.mark.fast
def test_events_map_onto_receipts_naming_the_reason() -> None:
    (bounce,) = email.sendgrid_events(
        json.dumps(
            [
                sendgrid_bounce(NID, "ada@example.com", cycle=2),
                {"event": "open", "herald_notification": NID, "herald_cycle": "2"},
                {"event": "bounce", "email": "someone-elses@example.com"},
            ]
        ).encode()
    )
    assert (str(bounce.notification_id), bounce.cycle) == (NID, 2)
    assert bounce.receipt.status is Status.undelivered
    assert bounce.receipt.error == "sendgrid bounce:bounce: 5.1.1 550 5.1.1 unknown user"

    (failed,) = email.mailgun_events(mailgun_event(mailgun_failed(NID, "a@b.co")))
    assert failed.receipt.status is Status.undelivered
    assert "does not exist" in (failed.receipt.error or "")
    (delayed,) = email.mailgun_events(
        mailgun_event(mailgun_failed(NID, "a@b.co", severity="temporary"))
    )
    assert delayed.receipt.status is None

    (hard,) = email.postmark_events(postmark_bounce(NID, "a@b.co"))
    assert hard.receipt.status is Status.undelivered and "unknown user" in (
        hard.receipt.error or ""
    )
    assert (
        email.postmark_events({"RecordType": "Bounce", "Metadata": {"herald_notification": "x"}})
        == []
    )


# --- on the real stack --------------------------------------------------------------


async def _sent_email(tenant: Tenant) -> tuple[str, str]:
    user = await tenant.user()
    template = await tenant.template("email", "<p>Hello {{ name }}</p>")
    nid = await tenant.send("email", user["id"], template, {"name": "Ada"})
    await wait_for_status(tenant.client, nid, {"sent"})
    return nid, str(user["email"])


async def _post(stack: Stack, path: str, content: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.api_url) as client:
        return await client.post(path, content=content, headers=headers)


async def test_a_signed_sendgrid_bounce_makes_the_email_undelivered(
    stack: Stack, tenant: Tenant
) -> None:
    nid, address = await _sent_email(tenant)
    body, headers = sendgrid_events([sendgrid_bounce(nid, address)])

    answer = await _post(stack, "/v1/providers/sendgrid/events", body, headers)

    assert answer.status_code == 204, answer.text
    found = await wait_for_status(tenant.client, nid, {"undelivered"})
    assert found["last_error"] == "sendgrid bounce:bounce: 5.1.1 550 5.1.1 unknown user"
    details = [e["detail"] for e in await events(tenant.client, nid)]
    assert any((d or "").startswith("sendgrid reports bounce") for d in details)


async def test_a_forged_sendgrid_event_is_403_and_changes_nothing(
    stack: Stack, tenant: Tenant
) -> None:
    nid, address = await _sent_email(tenant)
    other = ec.generate_private_key(ec.SECP256R1())
    body, headers = sendgrid_events([sendgrid_bounce(nid, address)], key=other)
    before = await events(tenant.client, nid)

    forged = await _post(stack, "/v1/providers/sendgrid/events", body, headers)
    unsigned = await _post(
        stack, "/v1/providers/sendgrid/events", body, {"Content-Type": "application/json"}
    )
    unknown_integration = await _post(
        stack, f"/v1/providers/sendgrid/events/{uuid.uuid4()}", *sendgrid_events([])
    )

    assert [forged.status_code, unsigned.status_code, unknown_integration.status_code] == [
        403,
        403,
        403,
    ]
    assert (await tenant.client.get(f"/v1/notifications/{nid}")).json()["status"] == "sent"
    assert await events(tenant.client, nid) == before


async def test_mailgun_and_postmark_events_verified_and_forged(
    stack: Stack, tenant: Tenant
) -> None:
    nid, address = await _sent_email(tenant)
    forged = mailgun_event(mailgun_failed(nid, address), signing_key="guessed")
    json_headers = {"Content-Type": "application/json"}

    refused = await _post(
        stack, "/v1/providers/mailgun/events", json.dumps(forged).encode(), json_headers
    )
    refused_postmark = await _post(
        stack,
        "/v1/providers/postmark/events",
        json.dumps(postmark_bounce(nid, address)).encode(),
        json_headers | postmark_auth(("herald", "guessed")),
    )
    assert (refused.status_code, refused_postmark.status_code) == (403, 403)
    assert (await tenant.client.get(f"/v1/notifications/{nid}")).json()["status"] == "sent"

    signed = mailgun_event(mailgun_failed(nid, address))
    accepted = await _post(
        stack, "/v1/providers/mailgun/events", json.dumps(signed).encode(), json_headers
    )
    assert accepted.status_code == 204, accepted.text
    found = await wait_for_status(tenant.client, nid, {"undelivered"})
    assert "mailgun failed:permanent: 550" in found["last_error"]

    nid, address = await _sent_email(tenant)
    accepted = await _post(
        stack,
        "/v1/providers/postmark/events",
        json.dumps(postmark_bounce(nid, address)).encode(),
        json_headers | postmark_auth(),
    )
    assert accepted.status_code == 204, accepted.text
    found = await wait_for_status(tenant.client, nid, {"undelivered"})
    assert found["last_error"].startswith("postmark bounce:HardBounce: The server was unable")


def _signed(content: bytes) -> dict[str, str]:
    """SendGrid's headers for ``content`` signed with the development key."""
    stamp = str(int(time.time()))
    signature = email.dev_sendgrid_private_key().sign(
        stamp.encode() + content, ec.ECDSA(hashes.SHA256())
    )
    return {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
    }


async def test_hostile_event_bodies_are_refused_not_500(stack: Stack, tenant: Tenant) -> None:
    path = "/v1/providers/sendgrid/events"
    # Signed, but not a list of events: 422 naming the body.
    for content in (b'{"not": "a list"}', b"\x00", b"[" + b"x" * 1000):
        answer = await _post(stack, path, content, _signed(content))
        assert answer.status_code == 422, answer.text
        assert "body" in answer.text
    # Events naming no notification of Herald's (a NUL byte, a cycle of 50 digits,
    # someone else's id) change nothing.
    nid, _ = await _sent_email(tenant)
    weird = json.dumps(
        [
            {"event": "bounce", "herald_notification": "\x00" * 10, "herald_cycle": "1"},
            {"event": "bounce", "herald_notification": nid, "herald_cycle": "9" * 50},
            {"event": "bounce", "herald_notification": str(uuid.uuid4()), "herald_cycle": "1"},
        ]
    ).encode()
    answer = await _post(stack, path, weird, _signed(weird))
    assert answer.status_code == 204, answer.text
    assert (await tenant.client.get(f"/v1/notifications/{nid}")).json()["status"] == "sent"
    not_json = await _post(
        stack, "/v1/providers/mailgun/events", b"\x00{", {"Content-Type": "application/json"}
    )
    assert not_json.status_code == 422
    assert "body" in not_json.text


async def test_a_tenants_postmark_url_takes_its_own_notifications_only(
    stack: Stack, tenant: Tenant, other_tenant: Tenant, sinks: Sinks
) -> None:
    config = FakeCredentials().config("postmark", sinks.http_url)
    made = await tenant.client.post(
        "/v1/integrations",
        json={
            "channel": "email",
            "provider": "postmark",
            "config": config | {"from": "Herald <herald@mg.herald.test>"},
        },
    )
    assert made.status_code == 201, made.text
    integration = uuid.UUID(made.json()["id"])
    nid, address = await _sent_email(tenant)
    theirs, their_address = await _sent_email(other_tenant)
    path = f"/v1/providers/postmark/events/{integration}"
    login = email.postmark_webhook_login(stack.settings, integration)
    json_headers = {"Content-Type": "application/json"}

    deployment_login = await _post(
        stack,
        path,
        json.dumps(postmark_bounce(nid, address)).encode(),
        json_headers | postmark_auth(),
    )
    other_tenants = await _post(
        stack,
        path,
        json.dumps(postmark_bounce(theirs, their_address)).encode(),
        json_headers | postmark_auth(login),
    )
    own = await _post(
        stack,
        path,
        json.dumps(postmark_bounce(nid, address)).encode(),
        json_headers | postmark_auth(login),
    )

    assert [deployment_login.status_code, other_tenants.status_code, own.status_code] == [
        403,
        204,
        204,
    ]
    await wait_for_status(tenant.client, nid, {"undelivered"})
    status = (await other_tenant.client.get(f"/v1/notifications/{theirs}")).json()["status"]
    assert status == "sent"
