"""``check`` of the HTTP email providers (``POST /v1/integrations/{id}/check``): each asks
its API's read-only endpoint with the integration's credentials and sends nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from activities.providers import email_http  # noqa: F401 - registers the providers
from activities.providers.base import Provider
from activities.providers.registry import build
from devtools.fakes.email_apis import EmailApiFakes, FakeCredentials
from devtools.sinks import Sinks, SinkState
from herald.contracts import Channel
from herald.ports import free_port
from herald.settings import Settings

pytestmark = pytest.mark.fast

BASE = "http://fake.test"
CREDS = FakeCredentials()
PROVIDERS = ["sendgrid", "mailgun", "postmark", "ses"]
WRONG = {
    "sendgrid": {"api_key": "SG.wrong"},
    "mailgun": {"api_key": "wrong"},
    "postmark": {"server_token": "wrong"},
    "ses": {"secret_access_key": "wrong"},
}
# The read-only endpoint each provider's documentation names for reading the account.
ENDPOINT = {
    "sendgrid": ("GET", "/sendgrid/v3/scopes"),
    "mailgun": ("GET", f"/mailgun/v3/domains/{CREDS.mailgun_domain}"),
    "postmark": ("GET", "/postmark/server"),
    "ses": ("GET", "/ses/v2/email/account"),
}


@pytest.fixture
def state() -> SinkState:
    return SinkState(seed=1)


@pytest.fixture
def seen() -> list[httpx.Request]:
    return []


@pytest.fixture
async def http(state: SinkState, seen: list[httpx.Request]) -> AsyncIterator[httpx.AsyncClient]:
    fakes = EmailApiFakes(state, CREDS).transport()

    async def record(request: httpx.Request) -> None:
        seen.append(request)

    async with httpx.AsyncClient(transport=fakes, event_hooks={"request": [record]}) as client:
        yield client


def _provider(name: str, http: httpx.AsyncClient, base: str = BASE, **change: str) -> Provider:
    config = CREDS.config(name, base) | {"from": "herald@mg.herald.test"} | change
    return build(Channel.email, name, config, Settings(), http)


@pytest.mark.parametrize("name", PROVIDERS)
async def test_good_credentials_check_ok_with_one_read_and_nothing_sent(
    name: str, http: httpx.AsyncClient, state: SinkState, seen: list[httpx.Request]
) -> None:
    ok, detail = await _provider(name, http).check()

    assert ok, detail
    assert detail == f"{name} accepted the credentials"
    assert [(r.method, r.url.path) for r in seen] == [ENDPOINT[name]]
    assert state.received() == []


@pytest.mark.parametrize("name", PROVIDERS)
async def test_wrong_credentials_check_not_ok_naming_the_refusal(
    name: str, http: httpx.AsyncClient, state: SinkState
) -> None:
    ok, detail = await _provider(name, http, **WRONG[name]).check()

    assert not ok
    assert detail.startswith(f"{name} refused the credentials: HTTP 40")
    assert "wrong" not in detail  # the credential itself is never echoed
    assert state.received() == []


async def test_ses_check_names_the_signature_error(http: httpx.AsyncClient) -> None:
    ok, detail = await _provider("ses", http, **WRONG["ses"]).check()
    assert not ok and "SignatureDoesNotMatch" in detail and "403" in detail


async def test_ses_check_with_an_unknown_access_key_is_refused(http: httpx.AsyncClient) -> None:
    ok, detail = await _provider("ses", http, access_key_id="AKIAUNKNOWN000000000").check()
    assert not ok and "UnrecognizedClientException" in detail


async def test_mailgun_check_of_a_domain_the_key_does_not_own_is_not_ok(
    http: httpx.AsyncClient, state: SinkState
) -> None:
    ok, detail = await _provider("mailgun", http, domain="other.example.com").check()
    assert not ok
    assert detail == "mailgun answered HTTP 404: Domain not found: other.example.com"
    assert state.received() == []


async def test_postmark_check_names_postmarks_error_code(http: httpx.AsyncClient) -> None:
    ok, detail = await _provider("postmark", http, **WRONG["postmark"]).check()
    assert not ok and "ErrorCode 10" in detail


@pytest.mark.parametrize("name", PROVIDERS)
async def test_an_unreachable_provider_checks_not_ok(name: str) -> None:
    async with httpx.AsyncClient(timeout=2) as client:
        provider = _provider(name, client, base=f"http://127.0.0.1:{free_port()}")
        ok, detail = await provider.check()
    assert not ok
    assert detail == f"{name} unreachable: ConnectError"


@pytest.mark.parametrize("name", PROVIDERS)
async def test_a_provider_answering_5xx_checks_not_ok(name: str) -> None:
    down = httpx.MockTransport(lambda request: httpx.Response(503, text="down for maintenance"))
    async with httpx.AsyncClient(transport=down) as client:
        ok, detail = await _provider(name, client).check()
    assert not ok
    assert detail.startswith(f"{name} answered HTTP 503")


async def test_the_fakes_check_auth_on_the_read_endpoints_as_on_send(
    http: httpx.AsyncClient,
) -> None:
    assert (await http.get(f"{BASE}/sendgrid/v3/scopes")).status_code == 401
    assert (await http.post(f"{BASE}/sendgrid/v3/scopes")).status_code == 405
    domain = f"{BASE}/mailgun/v3/domains/{CREDS.mailgun_domain}"
    assert (await http.get(domain)).status_code == 401
    assert (await http.get(domain, auth=("api", "wrong"))).status_code == 401
    server = await http.get(f"{BASE}/postmark/server")
    assert (server.status_code, server.json()["ErrorCode"]) == (401, 10)
    account = await http.get(f"{BASE}/ses/v2/email/account")
    assert account.status_code == 403
    assert account.headers["X-Amzn-ErrorType"] == "MissingAuthenticationTokenException"


async def test_the_provider_sink_serves_the_checks_over_http() -> None:
    sinks = Sinks(smtp_port=free_port(), http_port=free_port()).start()
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            results = [await _provider(n, client, base=sinks.http_url).check() for n in PROVIDERS]
            wrong = [
                await _provider(n, client, base=sinks.http_url, **WRONG[n]).check()
                for n in PROVIDERS
            ]
    finally:
        sinks.stop()
    assert all(ok for ok, _ in results), results
    assert not any(ok for ok, _ in wrong), wrong
    assert sinks.state.received() == []
