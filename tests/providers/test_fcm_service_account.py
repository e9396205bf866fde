"""FCM with a Google service account: Herald mints its access tokens with the JWT-bearer
grant against the fake's strict token endpoint, keeps one until shortly before it
expires, drops it when FCM answers 401, and maps the token endpoint's refusals onto
Herald's classes; a key file that cannot mint anything is a 422 naming the field, and
the key never comes out of the API again."""

from __future__ import annotations

import asyncio
import functools
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, cast

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from activities.providers.base import ProviderError
from activities.providers.failover import channel_providers
from activities.providers.push import (
    FCM_SCOPE,
    JWT_BEARER,
    REFRESH_MARGIN_SECONDS,
    FcmProvider,
    ServiceAccountAuth,
)
from activities.providers.registry import build
from api.schemas.integrations import FcmConfig
from devtools.sinks import ACCESS_TOKEN_SECONDS, FcmFake, Rule, Sinks, SinkState
from devtools.sinks import new_service_account as make_account
from herald.contracts import Channel, RenderedMessage, SendRequest
from herald.ports import free_port
from herald.settings import Settings
from tests.api.in_process import (
    api_key_for,
    in_process_client,
    in_process_settings,
    migrated_database,
)
from tests.harness import Tenant, new_run_id, wait_for_status

BASE = "http://fcm.test"
TOKEN_URL = f"{BASE}/token"
DEVICE = "device-token-1"
# Made once (RSA key generation is slow): one account the fake knows, one it does not.
ACCOUNT = make_account("herald-test")
STRANGER = make_account("herald-other")


class Clock:
    """Time as a test says it is."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _request(address: str = DEVICE) -> SendRequest:
    return SendRequest(
        notification_id=uuid.uuid4(),
        channel=Channel.push,
        address=address,
        message=RenderedMessage(template_version=1, locale="en", subject="Hi", body="Hello Ada"),
        data={"order": "42"},
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state() -> SinkState:
    return SinkState(seed=1)


@pytest.fixture
def fake(state: SinkState, clock: Clock) -> FcmFake:
    made = FcmFake(state)
    made.clock = clock
    made.register(ACCOUNT)
    return made


@pytest.fixture
async def http(fake: FcmFake) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=fake.transport()) as client:
        yield client


def _provider(
    http: httpx.AsyncClient, clock: Clock, account: dict[str, str] = ACCOUNT
) -> FcmProvider:
    config = {"project_id": "herald-test", "service_account_json": json.dumps(account)}
    built = build(Channel.push, "fcm", config | {"base_url": BASE}, Settings(), http)
    provider = cast(FcmProvider, built)
    assert isinstance(provider.auth, ServiceAccountAuth)
    provider.auth.clock = clock
    return provider


# --- sending -----------------------------------------------------------------------------


@pytest.mark.fast
async def test_a_send_reaches_fcm_with_an_access_token_minted_from_the_account(
    http: httpx.AsyncClient, fake: FcmFake, state: SinkState, clock: Clock
) -> None:
    provider = _provider(http, clock)
    message_id = await provider.deliver(_request())

    (got,) = state.received("push")
    assert (got.to, got.body, got.message_id) == (DEVICE, "Hello Ada", message_id)
    # The fake issued the bearer token FCM saw, for an assertion of the documented shape.
    (bearer,) = fake.bearers
    assert bearer in fake.issued and bearer != "dev-token"
    (claims,) = fake.grants
    assert claims["iss"] == ACCOUNT["client_email"]
    assert claims["scope"] == FCM_SCOPE and claims["aud"] == TOKEN_URL
    assert claims["exp"] - claims["iat"] == 3600 and claims["iat"] == int(clock.now)
    assert isinstance(provider.auth, ServiceAccountAuth)
    assertion = provider.auth.assertion()
    assert jwt.get_unverified_header(assertion) == {
        "alg": "RS256",
        "typ": "JWT",
        "kid": ACCOUNT["private_key_id"],
    }


@pytest.mark.fast
async def test_the_token_is_kept_across_sends_and_minted_again_before_it_expires(
    http: httpx.AsyncClient, fake: FcmFake, state: SinkState, clock: Clock
) -> None:
    provider = _provider(http, clock)
    await provider.deliver(_request())
    await provider.deliver(_request())
    assert len(fake.grants) == 1

    # Kept until REFRESH_MARGIN_SECONDS before its expires_in (3599 s).
    clock.now += ACCESS_TOKEN_SECONDS - 1 - REFRESH_MARGIN_SECONDS - 1
    await provider.deliver(_request())
    assert len(fake.grants) == 1
    clock.now += 2
    await provider.deliver(_request())
    assert len(fake.grants) == 2
    first, second = fake.bearers[0], fake.bearers[-1]
    assert fake.bearers == [first, first, first, second] and first != second
    assert len(state.received("push")) == 4

    # Many sends at once while no token is kept: one token request between them.
    clock.now += ACCESS_TOKEN_SECONDS
    await asyncio.gather(*(provider.deliver(_request(f"device-{i}")) for i in range(5)))
    assert len(fake.grants) == 3


@pytest.mark.fast
async def test_a_401_from_fcm_drops_the_token(
    http: httpx.AsyncClient, fake: FcmFake, state: SinkState, clock: Clock
) -> None:
    provider = _provider(http, clock)
    await provider.deliver(_request())
    # FCM no longer takes the kept token: a new one is minted and the message sent once.
    fake.revoke()
    await provider.deliver(_request())
    assert len(fake.grants) == 2
    assert len(state.received("push")) == 2
    assert len(set(fake.bearers)) == 2 and len(fake.bearers) == 3

    # A 401 for a token just minted is FCM refusing the account: the provider's
    # permanent failure (another provider may do better), and the token is dropped.
    state.add_rule(Rule(match="refused-device", fail_with=[401, 401]))
    with pytest.raises(ProviderError) as refused:
        await provider.deliver(_request("refused-device"))
    assert refused.value.permanent and refused.value.provider_fault
    assert "401" in str(refused.value)
    assert len(fake.grants) == 3
    await provider.deliver(_request())
    assert len(fake.grants) == 4


@pytest.mark.fast
async def test_the_token_endpoints_refusals_are_the_accounts(
    http: httpx.AsyncClient, fake: FcmFake, state: SinkState, clock: Clock
) -> None:
    # A key Google does not know: permanent, and the provider's (not the recipient's).
    with pytest.raises(ProviderError) as unknown:
        await _provider(http, clock, STRANGER).deliver(_request())
    assert unknown.value.permanent and unknown.value.provider_fault
    assert "invalid_grant" in str(unknown.value)
    assert STRANGER["private_key"] not in str(unknown.value)

    # The token endpoint down: transient, with its Retry-After.
    fake.token_outage = 503
    with pytest.raises(ProviderError) as down:
        await _provider(http, clock).deliver(_request())
    assert not down.value.permanent and down.value.provider_fault
    assert "503" in str(down.value)
    # Nothing reached FCM's messages:send either time.
    assert fake.bearers == [] and state.requests == []

    fake.token_outage = None
    await _provider(http, clock).deliver(_request())
    assert len(state.received("push")) == 1


@pytest.mark.fast
async def test_check_mints_a_token_and_validates_without_delivering(
    http: httpx.AsyncClient, fake: FcmFake, state: SinkState, clock: Clock
) -> None:
    """``POST /v1/integrations/{id}/check`` for FCM: a ``validate_only`` send, so a good
    account is ``ok`` and nothing reaches any device; a key Google does not know, or a
    static token FCM refuses, is not."""
    assert await _provider(http, clock).check() == (True, "fcm accepted the credentials")
    assert len(fake.grants) == 1 and len(fake.bearers) == 1
    assert state.received("push") == []

    ok, detail = await _provider(http, clock, STRANGER).check()
    assert not ok and "invalid_grant" in detail
    assert STRANGER["private_key"] not in detail

    config = {"project_id": "herald-test", "token": "not-a-token", "base_url": BASE}
    static = build(Channel.push, "fcm", config, Settings(), http)
    ok, detail = await static.check()
    assert not ok and "401" in detail
    assert state.received("push") == []


@pytest.fixture(scope="module")
def sink() -> Iterator[Sinks]:
    running = Sinks(smtp_port=free_port(), http_port=free_port()).start()
    yield running
    running.stop()


@pytest.mark.fast
async def test_the_sink_serves_the_token_endpoint_and_fcm_over_http(sink: Sinks) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        # The development key file the sink knows, as anyone running it can fetch it.
        account = (await http.get(f"{sink.http_url}/_sink/fcm/service-account")).json()
        assert account == sink.fcm.dev_service_account()
        config = {
            "project_id": account["project_id"],
            "service_account_json": json.dumps(account),
            "base_url": sink.http_url,
        }
        provider = build(Channel.push, "fcm", config, Settings(), http)
        await provider.deliver(_request("over-http-1"))
        await provider.deliver(_request("over-http-2"))
    assert {m.to for m in sink.state.received("push")} >= {"over-http-1", "over-http-2"}
    (claims,) = sink.fcm.grants
    assert claims["aud"] == f"{sink.http_url}/token"
    assert sink.fcm.bearers[-2] == sink.fcm.bearers[-1] in sink.fcm.issued


@pytest.mark.fast
async def test_a_static_token_still_works_and_needs_no_token_endpoint(
    http: httpx.AsyncClient, fake: FcmFake, state: SinkState
) -> None:
    config = {"project_id": "p", "token": "dev-token", "base_url": BASE}
    provider = build(Channel.push, "fcm", config, Settings(), http)
    await provider.deliver(_request())
    assert fake.bearers == ["dev-token"] and fake.grants == []
    assert len(state.received("push")) == 1


# --- the fake's token endpoint -----------------------------------------------------------


@functools.cache
def _key(pem: str) -> Any:
    return serialization.load_pem_private_key(pem.encode(), password=None)


def _assertion(
    account: dict[str, str] = ACCOUNT, *, now: float, algorithm: str = "RS256", **change: Any
) -> str:
    claims: dict[str, Any] = {
        "iss": account["client_email"],
        "scope": FCM_SCOPE,
        "aud": TOKEN_URL,
        "iat": int(now),
        "exp": int(now) + 3600,
    }
    claims.update(change)
    key: Any = _key(account["private_key"]) if algorithm == "RS256" else "a-shared-secret-" * 4
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": ACCOUNT["private_key_id"]})


_REFUSED_ASSERTIONS: dict[str, Callable[[float], str]] = {
    "another key under the account's kid": lambda now: _assertion(STRANGER, now=now),
    "HS256": lambda now: _assertion(now=now, algorithm="HS256"),
    "wrong aud": lambda now: _assertion(now=now, aud="https://oauth2.googleapis.com/token"),
    "another issuer": lambda now: _assertion(now=now, iss=STRANGER["client_email"]),
    "valid for more than an hour": lambda now: _assertion(now=now, exp=int(now) + 3601),
    "expired": lambda now: _assertion(now=now - 4000, exp=int(now) - 400),
    "issued in the future": lambda now: _assertion(now=now + 600),
    "no firebase.messaging scope": lambda now: _assertion(
        now=now, scope="https://www.googleapis.com/auth/cloud-platform"
    ),
    "not a JWT": lambda now: "not.a\x00jwt",
}


def _ec_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.mark.fast
@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("another key under the account's kid", "invalid_grant"),
        ("HS256", "invalid_grant"),
        ("wrong aud", "invalid_grant"),
        ("another issuer", "invalid_grant"),
        ("valid for more than an hour", "invalid_grant"),
        ("expired", "invalid_grant"),
        ("issued in the future", "invalid_grant"),
        ("no firebase.messaging scope", "invalid_grant"),
        ("not a JWT", "invalid_grant"),
        ("JSON body", "invalid_request"),
        ("other grant type", "unsupported_grant_type"),
        ("no assertion", "invalid_request"),
    ],
)
async def test_the_fakes_token_endpoint_is_as_strict_as_googles(
    http: httpx.AsyncClient, fake: FcmFake, clock: Clock, case: str, error: str
) -> None:
    make = _REFUSED_ASSERTIONS.get(case)
    assertion = make(clock.now) if make else _assertion(now=clock.now)
    form = {"grant_type": JWT_BEARER, "assertion": assertion}
    if case == "other grant type":
        form["grant_type"] = "client_credentials"
    if case == "no assertion":
        del form["assertion"]
    if case == "JSON body":
        answer = await http.post(TOKEN_URL, json=form)
    else:
        answer = await http.post(TOKEN_URL, data=form)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == error
    assert fake.issued == {}

    # The same endpoint takes a proper assertion.
    taken = await http.post(
        TOKEN_URL, data={"grant_type": JWT_BEARER, "assertion": _assertion(now=clock.now)}
    )
    assert taken.status_code == 200, taken.text
    assert taken.json()["token_type"] == "Bearer" and taken.json()["expires_in"] > 3000


@pytest.mark.fast
async def test_the_fakes_fcm_refuses_tokens_it_did_not_issue_or_that_expired(
    http: httpx.AsyncClient, fake: FcmFake, state: SinkState, clock: Clock
) -> None:
    url = f"{BASE}/v1/projects/p/messages:send"
    body = {"message": {"token": DEVICE, "notification": {"body": "hi"}}}
    issued = await http.post(
        TOKEN_URL, data={"grant_type": JWT_BEARER, "assertion": _assertion(now=clock.now)}
    )
    token = issued.json()["access_token"]

    for bearer, status in [("made-up", 401), ("dev-token", 200), (token, 200)]:
        answer = await http.post(url, json=body, headers={"Authorization": f"Bearer {bearer}"})
        assert answer.status_code == status, (bearer, answer.text)
    clock.now += ACCESS_TOKEN_SECONDS
    expired = await http.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
    assert expired.status_code == 401
    assert expired.json()["error"]["status"] == "UNAUTHENTICATED"
    assert len(state.received("push")) == 2


# --- config ------------------------------------------------------------------------------


def _key_file(**change: Any) -> str:
    account: dict[str, Any] = dict(ACCOUNT)
    for name, value in change.items():
        if value is None:
            del account[name]
        else:
            account[name] = value
    return json.dumps(account)


@pytest.mark.fast
@pytest.mark.parametrize(
    ("key_file", "why"),
    [
        ("{not json", "not JSON"),
        ('["a list"]', "not a JSON object"),
        (_key_file(private_key=None), "'private_key'"),
        (_key_file(client_email=None), "'client_email'"),
        (_key_file(type="authorized_user"), "'type'"),
        (
            _key_file(private_key="-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            "PEM",
        ),
        (_key_file(private_key=_ec_pem()), "not an RSA key"),
        (_key_file(token_uri="https://10.0.0.5/token"), "token_uri"),
        (_key_file(token_uri="http://oauth2.googleapis.com/token"), "token_uri"),
        (_key_file(private_key_id=7), "'private_key_id'"),
        ('{"type": "service_account", "private_key": "\x00"}', "NUL"),
    ],
)
def test_a_key_file_that_cannot_mint_tokens_is_refused_naming_the_field(
    key_file: str, why: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        FcmConfig.model_validate({"project_id": "p", "service_account_json": key_file})
    (error,) = refused.value.errors()
    assert error["loc"] == ("service_account_json",)
    assert why in error["msg"]
    assert "PRIVATE KEY" not in error["msg"]


@pytest.mark.fast
async def test_exactly_one_credential_is_given(http: httpx.AsyncClient) -> None:
    account = json.dumps(ACCOUNT)
    for config in (
        {"project_id": "p"},
        {"project_id": "p", "token": "t", "service_account_json": account},
    ):
        with pytest.raises(ValidationError) as refused:
            FcmConfig.model_validate(config)
        assert "one of 'service_account_json' or 'token'" in str(refused.value)
        with pytest.raises(ValueError, match="one of 'service_account_json' or 'token'"):
            build(Channel.push, "fcm", config, Settings(), http)
    # The key file as a JSON object is taken as its text.
    parsed = FcmConfig.model_validate({"project_id": "p", "service_account_json": ACCOUNT})
    assert json.loads(parsed.service_account_json or "") == ACCOUNT


# --- the API (PostgreSQL) ----------------------------------------------------------------


@pytest.fixture(scope="module")
def database() -> Iterator[Settings]:
    with migrated_database(in_process_settings(webhooks_allow_private=True)) as settings:
        yield settings


@pytest.fixture(scope="module")
async def client(database: Settings) -> AsyncIterator[httpx.AsyncClient]:
    key = await api_key_for(database, f"fcm-{new_run_id()}")
    async with in_process_client(database, key) as made:
        yield made


async def test_the_api_refuses_a_bad_key_file_and_never_shows_a_good_one(
    client: httpx.AsyncClient,
) -> None:
    bad = {"channel": "push", "provider": "fcm", "config": {"project_id": "p"}}
    for key_file in ("{not json", _key_file(private_key=_ec_pem()), _key_file(token_uri=None)):
        bad["config"] = {"project_id": "p", "service_account_json": key_file}
        answer = await client.post("/v1/integrations", json=bad)
        assert answer.status_code == 422, answer.text
        locs = [error["loc"] for error in answer.json()["detail"]]
        assert ["body", "config", "service_account_json"] in locs, answer.text
        assert "PRIVATE KEY" not in answer.text

    good = {
        "channel": "push",
        "provider": "fcm",
        "config": {"project_id": "herald-test", "service_account_json": ACCOUNT},
    }
    made = await client.post("/v1/integrations", json=good)
    assert made.status_code == 201, made.text
    assert made.json()["config"] == {"project_id": "[set]", "service_account_json": "[set]"}
    shown = [made.text]
    shown.append((await client.get(f"/v1/integrations/{made.json()['id']}")).text)
    shown.append((await client.get("/v1/integrations")).text)
    key_lines = [line for line in ACCOUNT["private_key"].splitlines() if "PRIVATE" not in line]
    for text in shown:
        assert "PRIVATE KEY" not in text and ACCOUNT["private_key_id"] not in text
        assert not any(line in text for line in key_lines)


# --- the stack ---------------------------------------------------------------------------

# The workers read integrations again after this (HERALD_INTEGRATIONS_CACHE_SECONDS).
SETTLE = 3.5


async def test_a_push_goes_out_through_a_tenants_fcm_service_account(
    tenant: Tenant, sinks: Sinks
) -> None:
    # The development key file, as anyone running the sinks can fetch it.
    async with httpx.AsyncClient() as plain:
        account = (await plain.get(f"{sinks.http_url}/_sink/fcm/service-account")).json()
    made = await tenant.client.post(
        "/v1/integrations",
        json={
            "channel": "push",
            "provider": "fcm",
            "name": "own-fcm",
            "config": {
                "project_id": account["project_id"],
                "service_account_json": json.dumps(account),
                "base_url": sinks.http_url,
            },
        },
    )
    assert made.status_code == 201, made.text
    await asyncio.sleep(SETTLE)
    grants = len(sinks.fcm.grants)

    user = await tenant.user()
    device = await tenant.device(user["id"])
    template = await tenant.template("push", "Hello {{ name }}", subject="Hi")
    nid = await tenant.send("push", user["id"], template, {"name": "Ada"})
    status = await wait_for_status(tenant.client, nid)

    assert (status["status"], status["provider"]) == ("sent", "own-fcm"), status
    (got,) = sinks.state.received("push", to=device)
    assert got.body == "Hello Ada" and got.idempotency_key is not None
    assert len(sinks.fcm.grants) > grants
    assert sinks.fcm.grants[-1]["iss"] == account["client_email"]


@pytest.mark.fast
async def test_the_deployments_fcm_mints_from_its_own_key_file_and_its_secondary_does_not(
    http: httpx.AsyncClient, fake: FcmFake, state: SinkState
) -> None:
    """``HERALD_PUSH_SERVICE_ACCOUNT_JSON`` stands in for the static token; a secondary
    FCM account with a token of its own sends with that token, not the primary's key."""
    settings = Settings(
        push_api_url=BASE,
        push_service_account_json=json.dumps(ACCOUNT),
        push_token_base_url=BASE,
        push_secondary_api_url=BASE,
        push_secondary_token="dev-token",
    )
    chain = channel_providers(Channel.push, settings, http)
    primary, secondary = (route.provider for route in chain.routes)
    try:
        await primary.deliver(_request())
        await secondary.deliver(_request("device-token-2"))
    finally:
        await chain.close()
    assert [got.to for got in state.received("push")] == [DEVICE, "device-token-2"]
    minted, static = fake.bearers
    assert minted in fake.issued and static == "dev-token"
    (claims,) = fake.grants
    assert claims["iss"] == ACCOUNT["client_email"] and claims["aud"] == TOKEN_URL
