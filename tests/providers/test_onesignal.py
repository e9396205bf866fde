"""OneSignal: the exact request against the documented example and its refusals mapped
onto Herald's classes."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from activities.providers.http import HttpProvider
from activities.providers.registry import build
from devtools.sinks import Rule, SinkState
from herald.contracts import Channel, RenderedMessage, SendRequest
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

NID = uuid.UUID("3c2b1a09-8f7e-4d6c-9b5a-4a3b2c1d0e9f")
SUBSCRIPTION = "1dd608f2-c6a1-11e3-851d-000c2940e62c"


def _request(address: str = SUBSCRIPTION) -> SendRequest:
    return SendRequest(
        notification_id=NID,
        channel=Channel.push,
        address=address,
        message=RenderedMessage(template_version=1, locale="en", subject="Hi", body="Hello Ada"),
        data={"order": "42"},
    )


def _provider(http: httpx.AsyncClient, **change: str) -> HttpProvider:
    return fake_provider(Channel.push, "onesignal", http, **change)


async def test_the_request_is_the_documented_push_notification_call(
    http: httpx.AsyncClient, state: SinkState
) -> None:
    # https://documentation.onesignal.com/reference/push-notification : POST
    # /api/v1/notifications, "Authorization: Key <App API key>", JSON with app_id,
    # target_channel "push", include_subscription_ids, headings/contents by language,
    # data, and idempotency_key (a UUID; a repeat within 30 days is not sent again).
    provider = _provider(http)
    built = provider.build_request(_request())
    assert built.method == "POST" and str(built.url) == f"{BASE}/onesignal/api/v1/notifications"
    assert built.headers["authorization"] == f"Key {CREDS.onesignal_api_key}"
    assert built.headers["content-type"] == "application/json"
    assert json.loads(built.content) == {
        "app_id": CREDS.onesignal_app_id,
        "target_channel": "push",
        "include_subscription_ids": [SUBSCRIPTION],
        "headings": {"en": "Hi"},
        "contents": {"en": "Hello Ada"},
        "data": {"order": "42"},
        "idempotency_key": str(NID),
    }
    message_id = await provider.deliver(_request())
    (got,) = state.received("push")
    assert got.message_id == message_id and got.idempotency_key == str(NID)


async def test_without_a_base_url_it_calls_onesignal(http: httpx.AsyncClient) -> None:
    provider = build(Channel.push, "onesignal", {"app_id": "a", "api_key": "k"}, Settings(), http)
    assert str(provider.build_request(_request()).url) == (  # type: ignore[attr-defined]
        "https://onesignal.com/api/v1/notifications"
    )


@pytest.mark.parametrize(
    ("failure", "permanent", "provider_fault"),
    [
        ("unsubscribed", True, False),  # 200 with no id: the subscription is gone
        (400, True, False),
        (429, False, True),
        (503, False, True),
    ],
)
async def test_refusals_map_onto_herald_classes(
    http: httpx.AsyncClient,
    state: SinkState,
    failure: str | int,
    permanent: bool,
    provider_fault: bool,
) -> None:
    state.add_rule(Rule(match=SUBSCRIPTION, fail_with=[failure], retry_after=7))
    refused = await refusal(_provider(http).deliver(_request()))
    assert (refused.permanent, refused.provider_fault) == (permanent, provider_fault)
    if failure == 429:
        assert refused.retry_after == 7


async def test_a_wrong_api_key_is_the_providers_fault(http: httpx.AsyncClient) -> None:
    refused = await refusal(_provider(http, api_key="wrong").deliver(_request()))
    assert "401" in str(refused) and refused.permanent and refused.provider_fault


async def test_check_lists_notifications_and_sends_nothing(
    http: httpx.AsyncClient, state: SinkState
) -> None:
    assert (await _provider(http).check())[0] is True
    ok, detail = await _provider(http, api_key="wrong").check()
    assert ok is False and "401" in detail
    assert not state.received() and not state.requests
