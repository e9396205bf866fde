"""The email APIs' delivery events as receipts: verified (SendGrid's ECDSA signature,
Mailgun's HMAC, Postmark's basic auth), mapped onto delivered/undelivered, applied to the
notification they name on the real stack, and refused with 403 changing nothing when
forged. A tenant's integration takes its own webhook secrets in its config and answers
the ``receipts_url`` to give the provider."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.exceptions import RequestValidationError

from api.services.integrations import _checked_config, receipts_url
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


def _pem(key: Any) -> str:
    return str(
        key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
    )


@pytest.mark.fast
async def test_integration_webhook_secrets_are_checked_naming_the_field() -> None:
    settings = Settings(env="development")
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    for shown in (email.public_key_text(key), _pem(key)):
        sendgrid = {"api_key": "SG.x", "webhook_public_key": shown}
        assert await _checked_config(settings, "email", "sendgrid", sendgrid) == sendgrid
    postmark = {"server_token": "t", "webhook_username": "pm", "webhook_password": "pw"}
    assert await _checked_config(settings, "email", "postmark", postmark) == postmark

    def sendgrid_key(value: str) -> tuple[str, dict[str, str]]:
        return "sendgrid", {"api_key": "SG.x", "webhook_public_key": value}

    refused = [
        (sendgrid_key("not-a-key-at-all"), "webhook_public_key"),
        (sendgrid_key(email.public_key_text(key)[:40] + "\x00"), "webhook_public_key"),
        (sendgrid_key("A" * 100_000), "webhook_public_key"),
        (sendgrid_key(""), "webhook_public_key"),
        (
            sendgrid_key(_pem(rsa.generate_private_key(65537, 2048).public_key())),
            "webhook_public_key",
        ),
        (
            ("mailgun", {"api_key": "k", "domain": "d", "webhook_signing_key": "s\x00"}),
            "webhook_signing_key",
        ),
        (
            ("mailgun", {"api_key": "k", "domain": "d", "webhook_signing_key": "s" * 5000}),
            "webhook_signing_key",
        ),
        (("postmark", {"server_token": "t", "webhook_username": "pm"}), "webhook_password"),
        (("postmark", {"server_token": "t", "webhook_password": "pw-secret"}), "webhook_password"),
        (("postmark", postmark | {"webhook_username": "p:m"}), "webhook_username"),
    ]
    for (provider, config), field in refused:
        with pytest.raises(RequestValidationError) as err:
            await _checked_config(settings, "email", provider, config)
        assert [e["loc"] for e in err.value.errors()] == [("body", "config", field)]
        assert "not-a-key-at-all" not in str(err.value.errors())
        assert "pw-secret" not in str(err.value.errors())


def _row(provider: str, channel: str = "email") -> Any:
    return SimpleNamespace(id=uuid.uuid4(), channel=channel, provider=provider)


@pytest.mark.fast
def test_the_receipts_url_names_the_integration_and_carries_postmarks_login() -> None:
    settings = Settings(env="development", public_url="https://herald.example.com/")
    for provider in ("sendgrid", "mailgun"):
        row = _row(provider)
        assert receipts_url(settings, row, {}) == (
            f"https://herald.example.com/v1/providers/{provider}/events/{row.id}"
        )
    for channel, provider in (("email", "smtp"), ("email", "ses"), ("sms", "vonage")):
        assert receipts_url(settings, _row(provider, channel), {}) is None

    # Postmark without its own login: the derived one, as the URL's userinfo.
    row = _row("postmark")
    url = urlsplit(receipts_url(settings, row, {}) or "")
    assert (url.scheme, url.hostname, url.path) == (
        "https",
        "herald.example.com",
        f"/v1/providers/postmark/events/{row.id}",
    )
    secrets = email.integration_secrets(settings, row.id, {})
    email.verify_postmark(
        secrets, postmark_auth((url.username or "", url.password or ""))["Authorization"]
    )
    for wrong in ((url.username or "", "guessed"), ("herald", url.password or "")):
        with pytest.raises(email.Forged):
            email.verify_postmark(secrets, postmark_auth(wrong)["Authorization"])
    # With its own login the URL carries none: the tenant chose it and knows it.
    own = {"webhook_username": "pm", "webhook_password": "pw"}
    assert "@" not in (receipts_url(settings, row, own) or "")


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


async def _integration(
    tenant: Tenant, sinks: Sinks, provider: str, **config: str
) -> dict[str, Any]:
    made = await tenant.client.post(
        "/v1/integrations",
        json={
            "channel": "email",
            "provider": provider,
            "name": f"own-{provider}",
            "config": FakeCredentials().config(provider, sinks.http_url)
            | {"from": "Herald <herald@mg.herald.test>"}
            | config,
        },
    )
    assert made.status_code == 201, made.text
    return dict(made.json())


async def _settle(stack: Stack) -> None:
    """Waits out the workers' integrations cache, so sends see the new integrations."""
    await asyncio.sleep(stack.settings.integrations_cache_seconds + 0.5)


async def _sent_through(tenant: Tenant, integration: dict[str, Any]) -> tuple[str, str]:
    nid, address = await _sent_email(tenant)
    sent = (await tenant.client.get(f"/v1/notifications/{nid}")).json()
    assert sent["provider"] == integration["name"]
    return nid, address


async def _status(tenant: Tenant, nid: str) -> str:
    return str((await tenant.client.get(f"/v1/notifications/{nid}")).json()["status"])


async def test_a_tenants_sendgrid_integration_takes_receipts_signed_with_its_own_key(
    stack: Stack, tenant: Tenant, other_tenant: Tenant, sinks: Sinks
) -> None:
    key, their_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    not_a_key = await tenant.client.post(
        "/v1/integrations",
        json={
            "channel": "email",
            "provider": "sendgrid",
            "config": {"api_key": "SG.x", "webhook_public_key": "not-a-key-at-all"},
        },
    )
    assert not_a_key.status_code == 422, not_a_key.text
    assert ["body", "config", "webhook_public_key"] in [
        e["loc"] for e in not_a_key.json()["detail"]
    ]
    assert "not-a-key-at-all" not in not_a_key.text
    shown = email.public_key_text(key.public_key())
    mine = await _integration(tenant, sinks, "sendgrid", webhook_public_key=shown)
    theirs = await _integration(
        other_tenant,
        sinks,
        "sendgrid",
        webhook_public_key=email.public_key_text(their_key.public_key()),
    )
    url = mine["receipts_url"]
    assert url == f"{stack.settings.public_url}/v1/providers/sendgrid/events/{mine['id']}"
    answers = [
        (await tenant.client.get("/v1/integrations")).text,
        (await tenant.client.get(f"/v1/integrations/{mine['id']}")).text,
    ]
    assert all(shown not in answer and shown[-40:] not in answer for answer in answers)
    assert mine["config"]["webhook_public_key"] == "[set]"
    await _settle(stack)
    nid, address = await _sent_through(tenant, mine)
    before = await events(tenant.client, nid)

    async with httpx.AsyncClient() as http:
        # A's URL with the body signed by tenant B's key or the deployment's development
        # key, or B's URL with B's key: nothing changes for A.
        refused = [
            await http.post(url, content=body, headers=headers)
            for body, headers in (
                sendgrid_events([sendgrid_bounce(nid, address)], key=their_key),
                sendgrid_events([sendgrid_bounce(nid, address)]),
            )
        ]
        their_body, their_headers = sendgrid_events([sendgrid_bounce(nid, address)], key=their_key)
        via_theirs = await http.post(
            theirs["receipts_url"], content=their_body, headers=their_headers
        )
        assert [r.status_code for r in refused] == [403, 403]
        assert via_theirs.status_code in (204, 403, 404)  # verified, but not B's to change
        assert await _status(tenant, nid) == "sent"
        assert await events(tenant.client, nid) == before

        body, headers = sendgrid_events([sendgrid_bounce(nid, address)], key=key)
        accepted = await http.post(url, content=body, headers=headers)
    assert accepted.status_code == 204, accepted.text
    found = await wait_for_status(tenant.client, nid, {"undelivered"})
    assert found["last_error"] == "sendgrid bounce:bounce: 5.1.1 550 5.1.1 unknown user"


async def test_mailgun_and_postmark_integrations_take_receipts_at_their_receipts_url(
    stack: Stack, tenant: Tenant, other_tenant: Tenant, sinks: Sinks
) -> None:
    signing_key = f"mg-{uuid.uuid4().hex}"
    mailgun = await _integration(tenant, sinks, "mailgun", webhook_signing_key=signing_key)
    postmark = await _integration(other_tenant, sinks, "postmark")
    for who, made in ((tenant, mailgun), (other_tenant, postmark)):
        assert signing_key not in (await who.client.get(f"/v1/integrations/{made['id']}")).text
    assert mailgun["config"]["webhook_signing_key"] == "[set]"
    login = urlsplit(postmark["receipts_url"])
    assert login.username == postmark["id"] and login.password
    # The login lets its holder report receipts: a key that may only read (or a test
    # key) sees the URL without it.
    for body in ({"scopes": ["read"]}, {"kind": "test"}):
        made = await other_tenant.client.post("/v1/api-keys", json=body)
        assert made.status_code == 201, made.text
        reader = await other_tenant.client.get(
            f"/v1/integrations/{postmark['id']}",
            headers={"Authorization": f"Bearer {made.json()['key']}"},
        )
        assert reader.status_code == 200, reader.text
        assert reader.json()["receipts_url"] == postmark["receipts_url"].replace(
            f"{login.username}:{login.password}@", ""
        )
        assert login.password not in reader.text
    await _settle(stack)
    nid, address = await _sent_through(tenant, mailgun)
    theirs, their_address = await _sent_through(other_tenant, postmark)
    json_headers = {"Content-Type": "application/json"}

    async with httpx.AsyncClient() as http:
        forged = [
            await http.post(
                mailgun["receipts_url"],
                json=mailgun_event(mailgun_failed(nid, address), signing_key=wrong),
            )
            for wrong in ("guessed", email.DEV_MAILGUN_SIGNING_KEY)
        ]
        wrong_login = await http.post(
            postmark["receipts_url"].replace(login.password, "guessed"),
            content=json.dumps(postmark_bounce(theirs, their_address)).encode(),
            headers=json_headers,
        )
        assert [r.status_code for r in forged] + [wrong_login.status_code] == [403, 403, 403]
        assert await _status(tenant, nid) == "sent"
        assert await _status(other_tenant, theirs) == "sent"

        # As the providers post them: Mailgun signs the body, Postmark takes the login in
        # the URL as basic auth.
        signed = mailgun_event(mailgun_failed(nid, address), signing_key=signing_key)
        accepted = [
            await http.post(mailgun["receipts_url"], json=signed),
            await http.post(
                postmark["receipts_url"],
                content=json.dumps(postmark_bounce(theirs, their_address)).encode(),
                headers=json_headers,
            ),
        ]
    assert [r.status_code for r in accepted] == [204, 204], [r.text for r in accepted]
    found = await wait_for_status(tenant.client, nid, {"undelivered"})
    assert "mailgun failed:permanent: 550" in found["last_error"]
    found = await wait_for_status(other_tenant.client, theirs, {"undelivered"})
    assert found["last_error"].startswith("postmark bounce:HardBounce: The server was unable")
