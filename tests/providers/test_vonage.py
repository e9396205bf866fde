"""Vonage SMS: the exact request against the documented example, its per-message status
codes mapped onto Herald's classes, and its signed delivery receipts."""

from __future__ import annotations

import time
import uuid
from urllib.parse import parse_qs

import httpx
import pytest

from activities.providers.http import HttpProvider
from activities.providers.registry import build
from devtools.sinks import Rule, SinkState
from herald import receipts_vonage as vonage
from herald.contracts import Channel, RenderedMessage, SendRequest, Status
from herald.settings import Settings
from tests.providers.support import (  # noqa: F401 - the fixtures http and state
    BASE,
    CREDS,
    fake_provider,
    fakes_http,
    fakes_state,
    refusal,
)

pytestmark = pytest.mark.fast

NID = uuid.UUID("1f0c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f")


def _request(address: str = "+447700900123", body: str = "Your code is 1234") -> SendRequest:
    return SendRequest(
        notification_id=NID,
        channel=Channel.sms,
        address=address,
        message=RenderedMessage(template_version=1, locale="en", body=body),
    )


def _provider(http: httpx.AsyncClient, **change: str) -> HttpProvider:
    settings = Settings(public_url="https://herald.example.com")
    return fake_provider(Channel.sms, "vonage", http, settings, **change)


async def test_the_request_is_the_documented_send_an_sms_call(
    http: httpx.AsyncClient, state: SinkState
) -> None:
    # https://developer.vonage.com/en/api/sms#send-an-sms : POST https://rest.nexmo.com/sms/json
    # form-encoded api_key, api_secret, from, to (digits, no "+"), text; optional type,
    # client-ref (up to 100 characters), status-report-req, callback.
    provider = _provider(http)
    built = provider.build_request(_request())
    assert built.method == "POST" and str(built.url) == f"{BASE}/vonage/sms/json"
    assert built.headers["content-type"] == "application/x-www-form-urlencoded"
    assert {k: v[0] for k, v in parse_qs(built.content.decode()).items()} == {
        "api_key": CREDS.vonage_api_key,
        "api_secret": CREDS.vonage_api_secret,
        "from": "Herald",
        "to": "447700900123",
        "text": "Your code is 1234",
        "type": "text",
        "client-ref": str(NID),
        "status-report-req": "1",
        "callback": "https://herald.example.com/v1/providers/vonage/receipts",
    }
    message_id = await provider.deliver(_request())
    (got,) = state.received("sms")
    assert got.message_id == message_id and got.idempotency_key == str(NID)
    assert got.raw["provider"] == "vonage"


async def test_without_a_base_url_it_calls_vonage_itself(http: httpx.AsyncClient) -> None:
    config = {"api_key": "k", "api_secret": "s", "from": "Herald"}
    provider = build(Channel.sms, "vonage", config, Settings(), http)
    assert str(provider.build_request(_request()).url) == "https://rest.nexmo.com/sms/json"  # type: ignore[attr-defined]


async def test_unicode_text_is_sent_as_unicode(http: httpx.AsyncClient) -> None:
    built = _provider(http).build_request(_request(body="Код 1234"))
    assert parse_qs(built.content.decode())["type"] == ["unicode"]


@pytest.mark.parametrize(
    ("failure", "permanent", "provider_fault"),
    [
        ("status:1", False, True),  # throttled
        ("status:5", False, True),  # internal error
        ("status:9", True, True),  # partner quota (no balance): ours, fails over
        ("status:15", True, True),  # sender not allowed
        ("status:7", True, False),  # number barred: this recipient
        ("status:29", True, False),  # non-whitelisted destination
        ("status:6", True, False),  # invalid message
        (503, False, True),
    ],
)
async def test_status_codes_map_onto_herald_classes(
    http: httpx.AsyncClient,
    state: SinkState,
    failure: str | int,
    permanent: bool,
    provider_fault: bool,
) -> None:
    state.add_rule(Rule(match="+4477009001", fail_with=[failure]))
    refused = await refusal(_provider(http).deliver(_request()))
    assert (refused.permanent, refused.provider_fault) == (permanent, provider_fault)
    assert not state.received("sms")


async def test_wrong_credentials_are_vonage_status_4_and_the_providers_fault(
    http: httpx.AsyncClient,
) -> None:
    refused = await refusal(_provider(http, api_secret="wrong").deliver(_request()))
    assert refused.permanent and refused.provider_fault and "status 4" in str(refused)


def _dlr(**change: str) -> dict[str, str]:
    params = {
        "msisdn": "447700900123",
        "to": "Herald",
        "network-code": "23410",
        "messageId": "0A0000001234567B",
        "price": "0.03330000",
        "status": "delivered",
        "scts": "2012081400",
        "err-code": "0",
        "api-key": CREDS.vonage_api_key,
        "client-ref": str(NID),
        "message-timestamp": "2026-12-05 04:00:00",
        "timestamp": str(int(time.time())),
        "nonce": "6ba9a7d3-1c4b-4a63-9f60-0e7f6f0b4c41",
    }
    return params | change


@pytest.mark.parametrize("method", ["md5hash", "md5", "sha1", "sha256", "sha512"])
def test_a_receipt_signed_by_any_vonage_method_is_verified(method: str) -> None:
    params = _dlr()
    params["sig"] = vonage.sign(params, "secret", method)
    vonage.verify(params, ["secret"])
    message_id, receipt = vonage.receipt_of(params)
    assert message_id == "0A0000001234567B" and receipt.status is Status.delivered


def test_the_signature_covers_values_with_ampersands_as_vonage_does() -> None:
    # Vonage replaces "&" and "=" in values with "_" before signing.
    params = {"a": "x&y=z", "timestamp": "1"}
    assert vonage._signed_string(params) == b"&a=x_y_z&timestamp=1"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda p: p.pop("sig"),
        lambda p: p.update(sig="0" * 64),
        lambda p: p.update(status="failed"),  # signed as delivered
        lambda p: p.update(sig=vonage.sign(p, "another secret")),
        lambda p: p.update(timestamp="1", sig=vonage.sign(p | {"timestamp": "1"}, "secret")),
        lambda p: p.update(sig="\x00"),
    ],
)
def test_a_forged_or_stale_receipt_is_refused(tamper) -> None:  # type: ignore[no-untyped-def]
    params = _dlr()
    params["sig"] = vonage.sign(params, "secret")
    tamper(params)
    with pytest.raises(vonage.Forged):
        vonage.verify(params, ["secret"])


def test_no_secret_means_nothing_is_trusted() -> None:
    params = _dlr()
    params["sig"] = vonage.sign(params, vonage.DEVELOPMENT_SIGNATURE_SECRET)
    production = Settings().model_copy(update={"env": "production"})
    with pytest.raises(vonage.Forged):
        vonage.verify(params, vonage.deployment_secrets(production))
    vonage.verify(params, vonage.deployment_secrets(Settings()))


@pytest.mark.parametrize(
    ("status", "code", "outcome", "error"),
    [
        ("delivered", "0", Status.delivered, None),
        ("failed", "1", Status.undelivered, "vonage failed (error 1)"),
        ("rejected", "6", Status.undelivered, "vonage rejected (error 6)"),
        ("expired", "5", Status.undelivered, "vonage expired (error 5)"),
        ("accepted", "0", None, None),
        ("buffered", "0", None, None),
    ],
)
def test_receipt_statuses(
    status: str, code: str, outcome: Status | None, error: str | None
) -> None:
    _, receipt = vonage.receipt_of(_dlr(status=status, **{"err-code": code}))
    assert receipt.status is outcome and receipt.error == error and receipt.source == "vonage"


async def test_check_asks_for_the_balance_and_sends_nothing(
    http: httpx.AsyncClient, state: SinkState
) -> None:
    assert (await _provider(http).check())[0] is True
    ok, detail = await _provider(http, api_secret="wrong").check()
    assert ok is False and "401" in detail
    assert not state.received() and not state.requests
