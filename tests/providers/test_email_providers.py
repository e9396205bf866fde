"""The HTTP email providers against their protocol fakes: the exact request each sends for
one notification (checked against the shape its API documents), how each API's refusals
map onto Herald's classes, and the fakes' own strictness."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from activities.providers import email_http  # noqa: F401 - registers the providers
from activities.providers.base import Provider, ProviderError
from activities.providers.registry import build, known
from devtools.fakes.email_apis import EmailApiFakes, FakeCredentials
from devtools.sinks import Received, Rule, Sinks, SinkState
from herald.contracts import Channel, RenderedMessage, SendRequest
from herald.ports import free_port
from herald.settings import Settings

pytestmark = pytest.mark.fast

BASE = "http://fake.test"
CREDS = FakeCredentials()
NID = uuid.UUID("0b7e3a52-3f1c-4d7e-9a51-6d0c8f2b1a11")
SENDER = "Herald <herald@mg.herald.test>"
UNSUBSCRIBE = "<https://notify.example.com/u/tok>, <mailto:unsubscribe@example.com?subject=tok>"
PROVIDERS = ["sendgrid", "mailgun", "postmark", "ses"]


def _request(address: str = "ada@example.com", cycle: int = 1) -> SendRequest:
    return SendRequest(
        notification_id=NID,
        cycle=cycle,
        channel=Channel.email,
        address=address,
        message=RenderedMessage(
            template_version=1,
            locale="en",
            subject="Welcome",
            body="<p>Hello Ada</p>",
            headers={
                "List-Unsubscribe": UNSUBSCRIBE,
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
            category="news",
        ),
    )


HEADERS = {
    "Message-ID": f"<{NID}@mg.herald.test>",
    "X-Herald-Notification-Id": str(NID),
    "List-Unsubscribe": UNSUBSCRIBE,
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}
ARGS = {"herald_notification": str(NID), "herald_cycle": "1"}


@pytest.fixture
def state() -> SinkState:
    return SinkState(seed=1)


@pytest.fixture
async def http(state: SinkState) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=EmailApiFakes(state, CREDS).transport()) as client:
        yield client


def _provider(name: str, http: httpx.AsyncClient, **change: str) -> Provider:
    config = CREDS.config(name, BASE) | {"from": SENDER} | change
    return build(Channel.email, name, config, Settings(), http)


async def _sent(name: str, http: httpx.AsyncClient, state: SinkState) -> tuple[str, Received]:
    message_id = await _provider(name, http).deliver(_request())
    (received,) = state.received("email")
    return message_id, received


# In a documented example: a map whose keys are the sender's own (headers, custom args).
_ANY = "*"


def _open(example: dict[str, str]) -> dict[str, str]:
    return example | {_ANY: "string"}


def _conforms(ours: Any, documented: Any, where: str = "$") -> None:
    """Every field we send is one the documented example has, with the same JSON type."""
    if isinstance(documented, dict):
        assert isinstance(ours, dict), where
        for key, value in ours.items():
            known = documented.get(key, documented.get(_ANY))
            assert known is not None, f"{where}.{key} is not in the documented example"
            _conforms(value, known, f"{where}.{key}")
    elif isinstance(documented, list):
        assert isinstance(ours, list), where
        for i, item in enumerate(ours):
            _conforms(item, documented[0], f"{where}[{i}]")
    else:
        assert type(ours) is type(documented), where


def test_every_http_email_provider_is_registered() -> None:
    assert set(PROVIDERS) <= set(known(Channel.email))


@pytest.mark.parametrize("name", PROVIDERS)
def test_a_config_without_its_credentials_is_refused_naming_the_field(name: str) -> None:
    key = {"sendgrid": "api_key", "mailgun": "domain", "postmark": "server_token", "ses": "region"}
    config = CREDS.config(name, BASE)
    del config[key[name]]
    with pytest.raises(ValueError, match=key[name]):
        build(Channel.email, name, config, Settings(), httpx.AsyncClient())


# --- snapshots ----------------------------------------------------------------------

# https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send (request body
# example, trimmed to the fields Herald uses).
SENDGRID_DOCUMENTED = {
    "personalizations": [{"to": [{"email": "john_doe@example.com", "name": "John Doe"}]}],
    "from": {"email": "orders@example.com", "name": "Example Order Confirmation"},
    "subject": "Your Example Order Confirmation",
    "content": [
        {"type": "text/plain", "value": "Thank you for your order."},
        {"type": "text/html", "value": "<p>Thank you for your order.</p>"},
    ],
    "headers": _open({"X-Example-Header": "value"}),
    "custom_args": _open({"customer_account_number": "123"}),
}


async def test_sendgrid_sends_the_documented_request(
    http: httpx.AsyncClient, state: SinkState
) -> None:
    message_id, received = await _sent("sendgrid", http, state)

    raw = received.raw
    assert (raw["method"], raw["path"]) == ("POST", "/v3/mail/send")
    assert raw["headers"]["authorization"] == f"Bearer {CREDS.sendgrid_api_key}"
    assert raw["headers"]["content-type"] == "application/json"
    assert raw["body"] == {
        "personalizations": [{"to": [{"email": "ada@example.com"}]}],
        "from": {"email": "herald@mg.herald.test", "name": "Herald"},
        "subject": "Welcome",
        "content": [
            {"type": "text/plain", "value": "Hello Ada"},
            {"type": "text/html", "value": "<p>Hello Ada</p>"},
        ],
        "headers": HEADERS,
        "custom_args": ARGS,
    }
    _conforms(raw["body"], SENDGRID_DOCUMENTED)
    # SendGrid takes no idempotency key: the shared Message-ID is what dedupes.
    assert received.idempotency_key == HEADERS["Message-ID"]
    assert message_id == received.message_id


# https://documentation.mailgun.com/docs/mailgun/api-reference/openapi-final/tag/Messages/
# ("Send an email": curl --user 'api:KEY' .../v3/DOMAIN/messages -F from=... -F to=...
# -F subject=... -F text=... -F html=... -F h:X-My-Header=... -F v:my-var=...).
MAILGUN_DOCUMENTED = {
    "from": "Excited User <mailgun@YOUR_DOMAIN_NAME>",
    "to": "YOU@YOUR_DOMAIN_NAME",
    "subject": "Hello",
    "text": "Testing some Mailgun awesomeness!",
    "html": "<html>HTML version of the body</html>",
}


async def test_mailgun_sends_the_documented_request(
    http: httpx.AsyncClient, state: SinkState
) -> None:
    message_id, received = await _sent("mailgun", http, state)

    raw = received.raw
    assert (raw["method"], raw["path"]) == ("POST", f"/v3/{CREDS.mailgun_domain}/messages")
    assert (
        raw["headers"]["authorization"]
        == httpx.BasicAuth("api", CREDS.mailgun_api_key)._auth_header
    )
    assert raw["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert raw["body"] == {
        "from": SENDER,
        "to": "ada@example.com",
        "subject": "Welcome",
        "text": "Hello Ada",
        "html": "<p>Hello Ada</p>",
        **{f"h:{name}": value for name, value in HEADERS.items()},
        **{f"v:{name}": value for name, value in ARGS.items()},
    }
    plain = {k: v for k, v in raw["body"].items() if not k.startswith(("h:", "v:"))}
    _conforms(plain, MAILGUN_DOCUMENTED)
    assert message_id == received.message_id and message_id.endswith("@mg.herald.test>")


# https://postmarkapp.com/developer/api/email-api#send-a-single-email (example request).
POSTMARK_DOCUMENTED = {
    "From": "sender@example.com",
    "To": "receiver@example.com",
    "Subject": "Test",
    "Tag": "Invitation",
    "HtmlBody": "<b>Hello</b>",
    "TextBody": "Hello",
    "ReplyTo": "reply@example.com",
    "Headers": [{"Name": "CUSTOM-HEADER", "Value": "value"}],
    "TrackOpens": True,
    "TrackLinks": "None",
    "Metadata": _open({"color": "blue", "client-id": "12345"}),
    "MessageStream": "outbound",
}


async def test_postmark_sends_the_documented_request(
    http: httpx.AsyncClient, state: SinkState
) -> None:
    message_id, received = await _sent("postmark", http, state)

    raw = received.raw
    assert (raw["method"], raw["path"]) == ("POST", "/email")
    assert raw["headers"]["x-postmark-server-token"] == CREDS.postmark_server_token
    assert raw["headers"]["accept"] == "application/json"
    assert raw["headers"]["content-type"] == "application/json"
    assert raw["body"] == {
        "From": SENDER,
        "To": "ada@example.com",
        "Subject": "Welcome",
        "HtmlBody": "<p>Hello Ada</p>",
        "TextBody": "Hello Ada",
        "Headers": [{"Name": name, "Value": value} for name, value in HEADERS.items()],
        "Metadata": ARGS,
        "MessageStream": "outbound",
    }
    _conforms(raw["body"], POSTMARK_DOCUMENTED)
    assert message_id == received.message_id


# https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html (request
# syntax, the fields of a Simple message).
SES_DOCUMENTED = {
    "Content": {
        "Simple": {
            "Body": {
                "Html": {"Charset": "string", "Data": "string"},
                "Text": {"Charset": "string", "Data": "string"},
            },
            "Headers": [{"Name": "string", "Value": "string"}],
            "Subject": {"Charset": "string", "Data": "string"},
        }
    },
    "Destination": {"BccAddresses": ["string"], "CcAddresses": ["string"], "ToAddresses": ["s"]},
    "EmailTags": [{"Name": "string", "Value": "string"}],
    "FromEmailAddress": "string",
    "ReplyToAddresses": ["string"],
}


async def test_ses_sends_the_documented_request_signed_with_sigv4(
    http: httpx.AsyncClient, state: SinkState
) -> None:
    message_id, received = await _sent("ses", http, state)

    raw = received.raw
    assert (raw["method"], raw["path"]) == ("POST", "/v2/email/outbound-emails")
    auth = raw["headers"]["authorization"]
    assert (
        auth.startswith(f"AWS4-HMAC-SHA256 Credential={CREDS.ses_access_key_id}/")
        and "/us-east-1/ses/aws4_request" in auth
    )
    assert raw["headers"]["content-type"] == "application/json"
    assert raw["body"] == {
        "FromEmailAddress": SENDER,
        "Destination": {"ToAddresses": ["ada@example.com"]},
        "Content": {
            "Simple": {
                "Subject": {"Data": "Welcome", "Charset": "UTF-8"},
                "Body": {
                    "Text": {"Data": "Hello Ada", "Charset": "UTF-8"},
                    "Html": {"Data": "<p>Hello Ada</p>", "Charset": "UTF-8"},
                },
                "Headers": [{"Name": name, "Value": value} for name, value in HEADERS.items()],
            }
        },
        "EmailTags": [{"Name": name, "Value": value} for name, value in ARGS.items()],
    }
    _conforms(raw["body"], SES_DOCUMENTED)
    assert message_id == received.message_id


@pytest.mark.parametrize("name", PROVIDERS)
async def test_a_resend_carries_its_cycle(
    name: str, http: httpx.AsyncClient, state: SinkState
) -> None:
    await _provider(name, http).deliver(_request(cycle=3))

    (received,) = state.received("email")
    assert received.idempotency_key == f"<{NID}-3@mg.herald.test>"
    assert "herald_cycle" in json.dumps(received.raw["body"])
    assert '"3"' in json.dumps(received.raw["body"])


# --- error mapping ------------------------------------------------------------------


async def _refusal(name: str, http: httpx.AsyncClient, **change: str) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await _provider(name, http, **change).deliver(_request())
    return caught.value


@pytest.mark.parametrize("name", PROVIDERS)
async def test_refused_credentials_are_the_providers_permanent_fault(
    name: str, http: httpx.AsyncClient, state: SinkState
) -> None:
    wrong = {
        "sendgrid": {"api_key": "SG.wrong"},
        "mailgun": {"api_key": "wrong"},
        "postmark": {"server_token": "wrong"},
        "ses": {"secret_access_key": "wrong"},
    }[name]

    err = await _refusal(name, http, **wrong)

    assert err.permanent and err.provider_fault
    assert "401" in str(err) or "403" in str(err)
    assert state.received() == []


@pytest.mark.parametrize("name", PROVIDERS)
async def test_an_address_the_api_refuses_is_the_recipients_failure(
    name: str, http: httpx.AsyncClient, state: SinkState
) -> None:
    state.add_rule(Rule(match="ada@", always=400))

    err = await _refusal(name, http)

    assert err.permanent and not err.provider_fault


@pytest.mark.parametrize("name", PROVIDERS)
async def test_rate_limited_waits_for_retry_after(
    name: str, http: httpx.AsyncClient, state: SinkState
) -> None:
    state.add_rule(Rule(match="ada@", always=429, retry_after=7))

    err = await _refusal(name, http)

    assert not err.permanent and err.provider_fault
    assert err.retry_after == 7


@pytest.mark.parametrize("name", PROVIDERS)
async def test_5xx_is_transient_and_the_providers(
    name: str, http: httpx.AsyncClient, state: SinkState
) -> None:
    state.add_rule(Rule(match="ada@", fail_with=["transient"]))

    err = await _refusal(name, http)
    assert not err.permanent and err.provider_fault
    # The rule is used up: the retry goes through.
    await _provider(name, http).deliver(_request())
    assert len(state.received("email")) == 1


@pytest.mark.parametrize("name", PROVIDERS)
async def test_a_malformed_address_is_refused_by_the_api_as_the_recipients(
    name: str, http: httpx.AsyncClient
) -> None:
    with pytest.raises(ProviderError) as caught:
        await _provider(name, http).deliver(_request(address="ada\x00@example"))
    assert caught.value.permanent and not caught.value.provider_fault


@pytest.mark.parametrize("name", PROVIDERS)
async def test_a_header_with_a_line_break_never_leaves(
    name: str, http: httpx.AsyncClient, state: SinkState
) -> None:
    request = _request()
    request.message.headers["List-Unsubscribe"] = "<https://x>\r\nBcc: victim@example.com"
    with pytest.raises(ProviderError, match="line break"):
        await _provider(name, http).deliver(request)
    assert state.requests == []


@pytest.mark.parametrize("name", ["sendgrid", "mailgun", "postmark", "ses"])
async def test_an_unverified_sender_is_the_providers_fault(
    name: str, http: httpx.AsyncClient
) -> None:
    err = await _refusal(name, http, **{"from": "not an address"})
    if name == "mailgun":  # Mailgun: 400 "'from' parameter is not a valid address"
        assert err.permanent and err.provider_fault
    elif name == "sendgrid":  # a 400 naming from.email
        assert err.permanent and err.provider_fault
    else:  # Postmark 422 ErrorCode 300, SES BadRequestException: the message's
        assert err.permanent


async def test_mailgun_unknown_domain_is_the_providers_fault(http: httpx.AsyncClient) -> None:
    err = await _refusal("mailgun", http, domain="other.example.com")
    assert err.permanent and err.provider_fault and "404" in str(err)


# --- the fakes' strictness ----------------------------------------------------------


async def test_the_fakes_refuse_what_the_real_apis_refuse(http: httpx.AsyncClient) -> None:
    sendgrid = f"{BASE}/sendgrid/v3/mail/send"
    auth = {"Authorization": f"Bearer {CREDS.sendgrid_api_key}"}
    assert (await http.post(sendgrid, json={})).status_code == 401
    assert (await http.post(sendgrid, content=b"{}", headers=auth)).status_code == 415
    missing = await http.post(sendgrid, json={"from": {"email": "a@b.co"}}, headers=auth)
    assert missing.status_code == 400
    assert missing.json()["errors"][0]["field"] == "personalizations"

    postmark = f"{BASE}/postmark/email"
    token = {"X-Postmark-Server-Token": CREDS.postmark_server_token}
    assert (await http.post(postmark, json={})).json()["ErrorCode"] == 10
    no_body = await http.post(postmark, json={"From": "a@b.co", "To": "c@d.co"}, headers=token)
    assert (no_body.status_code, no_body.json()["ErrorCode"]) == (422, 300)
    long_metadata = {
        "From": "a@b.co",
        "To": "c@d.co",
        "TextBody": "x",
        "Metadata": {"a_field_name_over_twenty": "x"},
    }
    assert (await http.post(postmark, json=long_metadata, headers=token)).status_code == 422

    mailgun = f"{BASE}/mailgun/v3/{CREDS.mailgun_domain}/messages"
    basic = httpx.BasicAuth("api", CREDS.mailgun_api_key)
    assert (await http.post(mailgun, data={"to": "a@b.co"})).status_code == 401
    no_from = await http.post(mailgun, data={"to": "a@b.co", "text": "x"}, auth=basic)
    assert no_from.json() == {"message": "'from' parameter is missing"}
    as_json = await http.post(mailgun, json={"from": "a@b.co"}, auth=basic)
    assert as_json.status_code == 400

    ses = f"{BASE}/ses/v2/email/outbound-emails"
    unsigned = await http.post(ses, json={})
    assert unsigned.status_code == 403
    assert unsigned.headers["X-Amzn-ErrorType"] == "MissingAuthenticationTokenException"


async def test_the_ses_fake_refuses_a_body_changed_after_signing(
    http: httpx.AsyncClient, state: SinkState
) -> None:
    provider = _provider("ses", http)
    signed = provider.build_request(_request())  # type: ignore[attr-defined]
    tampered = http.build_request(
        "POST",
        signed.url,
        content=signed.content.replace(b"ada@example.com", b"eve@example.com"),
        headers={k: v for k, v in signed.headers.items() if k.lower() != "content-length"},
    )

    answer = await http.send(tampered)

    assert answer.status_code == 403
    assert answer.headers["X-Amzn-ErrorType"] == "SignatureDoesNotMatch"
    assert state.received() == []


async def test_the_provider_sink_serves_every_fake_under_its_mount() -> None:
    sinks = Sinks(smtp_port=free_port(), http_port=free_port()).start()
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            for name in PROVIDERS:
                config = CREDS.config(name, sinks.http_url) | {"from": SENDER}
                provider = build(Channel.email, name, config, Settings(), client)
                await provider.deliver(_request(address=f"{name}@example.com"))
            sinks.state.add_rule(Rule(match="down@", always="transient"))
            with pytest.raises(ProviderError) as caught:
                await provider.deliver(_request(address="down@example.com"))
            assert not caught.value.permanent and "503" in str(caught.value)
            listed = (await client.get(f"{sinks.http_url}/_sink/messages?channel=email")).json()
    finally:
        sinks.stop()
    assert sorted(m["to"] for m in listed) == sorted(f"{n}@example.com" for n in PROVIDERS)


async def test_one_fake_can_be_down_while_the_others_send(
    http: httpx.AsyncClient, state: SinkState
) -> None:
    fakes = EmailApiFakes(state, CREDS)
    async with httpx.AsyncClient(transport=fakes.transport()) as client:
        fakes.fail("sendgrid", 503, retry_after=3)
        with pytest.raises(ProviderError) as caught:
            await _provider("sendgrid", client).deliver(_request())
        assert not caught.value.permanent and caught.value.retry_after == 3
        await _provider("mailgun", client).deliver(_request())
        fakes.recover("sendgrid")
        await _provider("sendgrid", client).deliver(_request())
    assert [m.raw["provider"] for m in state.received("email")] == ["mailgun", "sendgrid"]
