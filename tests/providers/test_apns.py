"""APNs over HTTP/2 against its fake: the documented request with a valid ES256 provider
token, a token refreshed before it is stale (and once more when APNs says it expired),
HTTP/1.1 refused, and APNs's refusals mapped onto Herald's classes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import jwt
import pytest

from activities.providers.base import ProviderError
from activities.providers.push_apis import TOKEN_REFRESH_SECONDS, ApnsProvider, send_uuid
from activities.providers.registry import build
from devtools.fakes.apns import ApnsFake, ApnsServer, new_key
from devtools.sinks import Rule, SinkState
from herald.contracts import Channel, RenderedMessage, SendRequest
from herald.settings import Settings

pytestmark = pytest.mark.fast

NID = uuid.UUID("7d1b3c5a-2e4f-4a6b-8c9d-0e1f2a3b4c5d")
DEVICE = "a" * 64
TEAM, KEY_ID, TOPIC = "ABCDE12345", "KEY1234567", "com.example.app"
PRIVATE, PUBLIC = new_key()


def _request(address: str = DEVICE, cycle: int = 1) -> SendRequest:
    return SendRequest(
        notification_id=NID,
        cycle=cycle,
        channel=Channel.push,
        address=address,
        message=RenderedMessage(template_version=1, locale="en", subject="Hi", body="Ada, hello"),
        data={"order": "42"},
    )


@pytest.fixture(scope="module")
def server() -> Iterator[ApnsServer]:
    running = ApnsServer(ApnsFake(TEAM, KEY_ID, PUBLIC, TOPIC)).start()
    yield running
    running.stop()


@pytest.fixture
def fake(server: ApnsServer) -> ApnsFake:
    server.fake.seen.clear()
    server.fake.revoke_before = 0.0
    server.fake.state = SinkState(seed=1)
    return server.fake


def _provider(server: ApnsServer, **change: str) -> ApnsProvider:
    config = {
        "team_id": TEAM,
        "key_id": KEY_ID,
        "private_key": PRIVATE,
        "topic": TOPIC,
        "base_url": server.url,
    } | change
    provider = build(Channel.push, "apns", config, Settings(), httpx.AsyncClient())
    assert isinstance(provider, ApnsProvider)
    return provider


async def test_the_request_is_apples_documented_one_over_http2_with_a_valid_token(
    server: ApnsServer, fake: ApnsFake
) -> None:
    # https://developer.apple.com/documentation/usernotifications/sending-notification-requests-to-apns
    # POST /3/device/<token>, HTTP/2; authorization: bearer <JWT {alg ES256, kid} {iss, iat}>;
    # apns-topic, apns-push-type, apns-priority, apns-id (a UUID); JSON body with "aps".
    provider = _provider(server)
    try:
        message_id = await provider.deliver(_request())
    finally:
        await provider.close()
    (seen,) = fake.seen
    assert seen.http_version == "2" and seen.status == 200
    assert seen.path == f"/3/device/{DEVICE}"
    assert message_id == str(NID) == seen.headers["apns-id"]
    assert {k: seen.headers[k] for k in ("apns-topic", "apns-push-type", "apns-priority")} == {
        "apns-topic": TOPIC,
        "apns-push-type": "alert",
        "apns-priority": "10",
    }
    assert seen.body == {"aps": {"alert": {"title": "Hi", "body": "Ada, hello"}}, "order": "42"}
    token = seen.headers["authorization"].removeprefix("bearer ")
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": KEY_ID, "typ": "JWT"}
    claims = jwt.decode(token, PUBLIC, algorithms=["ES256"])
    assert claims["iss"] == TEAM and abs(claims["iat"] - time.time()) < 60
    (got,) = fake.state.received("push")  # type: ignore[union-attr]
    assert got.idempotency_key == str(NID) and got.body == "Ada, hello"


def test_a_resend_gets_another_apns_id_that_is_still_a_uuid() -> None:
    again = send_uuid(_request(cycle=2))
    assert uuid.UUID(again) and again != str(NID) and again == send_uuid(_request(cycle=2))


async def test_a_token_near_an_hour_old_is_replaced_before_it_is_sent(
    server: ApnsServer, fake: ApnsFake
) -> None:
    provider = _provider(server)
    old = provider.token.get(now=time.time() - TOKEN_REFRESH_SECONDS - 1)
    try:
        await provider.deliver(_request())
    finally:
        await provider.close()
    (seen,) = fake.seen
    sent = seen.headers["authorization"].removeprefix("bearer ")
    assert sent != old and seen.status == 200
    assert time.time() - jwt.decode(sent, PUBLIC, algorithms=["ES256"])["iat"] < 60


async def test_the_same_token_is_reused_while_fresh(server: ApnsServer, fake: ApnsFake) -> None:
    provider = _provider(server)
    try:
        await provider.deliver(_request())
        await provider.deliver(_request())
    finally:
        await provider.close()
    assert len({seen.headers["authorization"] for seen in fake.seen}) == 1


async def test_expired_provider_token_is_refreshed_and_retried_once(
    server: ApnsServer, fake: ApnsFake
) -> None:
    provider = _provider(server)
    provider.token.get(now=time.time() - 1800)  # fresh to us, revoked by APNs
    fake.revoke_before = time.time() - 60
    try:
        await provider.deliver(_request())
    finally:
        await provider.close()
    assert [(s.status, s.reason) for s in fake.seen] == [
        (403, "ExpiredProviderToken"),
        (200, None),
    ]
    first, second = (s.headers["authorization"] for s in fake.seen)
    assert first != second


async def test_a_token_still_refused_after_refreshing_is_the_providers_fault(
    server: ApnsServer, fake: ApnsFake
) -> None:
    fake.revoke_before = time.time() + 3600  # every token: as if the key were revoked
    provider = _provider(server)
    try:
        with pytest.raises(ProviderError) as caught:
            await provider.deliver(_request())
    finally:
        await provider.close()
    assert len(fake.seen) == 2
    assert caught.value.permanent and caught.value.provider_fault


async def test_a_token_signed_by_another_key_is_refused(server: ApnsServer, fake: ApnsFake) -> None:
    provider = _provider(server, private_key=new_key()[0])
    try:
        with pytest.raises(ProviderError) as caught:
            await provider.deliver(_request())
    finally:
        await provider.close()
    assert "InvalidProviderToken" in str(caught.value) and caught.value.provider_fault


async def test_http1_is_refused_by_the_fake(server: ApnsServer, fake: ApnsFake) -> None:
    provider = _provider(server)
    request = provider.build_request(_request())
    await provider.close()
    async with httpx.AsyncClient() as http1:
        answer = await http1.post(
            str(request.url), content=request.content, headers=dict(request.headers)
        )
    assert answer.http_version == "HTTP/1.1" and answer.status_code == 505
    assert fake.seen[-1].http_version == "1.1" and not fake.state.received()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("address", "failure", "reason", "permanent", "provider_fault"),
    [
        ("not-a-token", None, "BadDeviceToken", True, False),
        (DEVICE, "unregistered", "Unregistered", True, False),
        (DEVICE, 429, "TooManyRequests", False, False),
        (DEVICE, 503, "ServiceUnavailable", False, True),
    ],
)
async def test_apns_refusals_map_onto_herald_classes(
    server: ApnsServer,
    fake: ApnsFake,
    address: str,
    failure: str | int | None,
    reason: str,
    permanent: bool,
    provider_fault: bool,
) -> None:
    if failure is not None:
        fake.state.add_rule(Rule(match=DEVICE, fail_with=[failure]))  # type: ignore[union-attr]
    provider = _provider(server)
    try:
        with pytest.raises(ProviderError) as caught:
            await provider.deliver(_request(address))
    finally:
        await provider.close()
    assert reason in str(caught.value)
    assert (caught.value.permanent, caught.value.provider_fault) == (permanent, provider_fault)


async def test_a_wrong_topic_is_our_configuration(server: ApnsServer, fake: ApnsFake) -> None:
    provider = _provider(server, topic="com.other.app")
    try:
        with pytest.raises(ProviderError) as caught:
            await provider.deliver(_request())
    finally:
        await provider.close()
    assert "TopicDisallowed" in str(caught.value)
    assert caught.value.permanent and caught.value.provider_fault


def test_without_a_base_url_it_calls_apples_hosts() -> None:
    config = {"team_id": TEAM, "key_id": KEY_ID, "private_key": PRIVATE, "topic": TOPIC}
    production = build(Channel.push, "apns", config, Settings(), httpx.AsyncClient())
    sandbox = build(
        Channel.push,
        "apns",
        config | {"environment": "development"},
        Settings(),
        httpx.AsyncClient(),
    )
    assert str(production.build_request(_request()).url).startswith(  # type: ignore[attr-defined]
        "https://api.push.apple.com/3/device/"
    )
    assert str(sandbox.build_request(_request()).url).startswith(  # type: ignore[attr-defined]
        "https://api.sandbox.push.apple.com/3/device/"
    )


async def test_check_verifies_token_and_topic_without_reaching_a_device(
    server: ApnsServer, fake: ApnsFake
) -> None:
    for change, expected in [
        ({}, True),
        ({"private_key": new_key()[0]}, False),
        ({"topic": "com.other.app"}, False),
    ]:
        provider = _provider(server, **change)
        try:
            ok, detail = await provider.check()
        finally:
            await provider.close()
        assert ok is expected, detail
    assert not fake.state.received() and not fake.state.requests  # type: ignore[union-attr]
