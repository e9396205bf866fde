"""The chat channel's providers against their fakes: Slack ``chat.postMessage``, Teams and
Discord incoming webhooks (the exact request each documents, their refusals and rate
limits mapped onto Herald's classes), the choice of provider by address, and the
addresses the API refuses."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from activities.providers.chat import deployment_providers
from activities.providers.failover import ProviderChain, Route
from activities.providers.http import HttpProvider
from activities.providers.registry import build
from api.schemas.users import UserCreate
from devtools.sinks import Rule, SinkState
from herald import chat
from herald.breaker import CircuitBreaker
from herald.contracts import Channel, RenderedMessage, SendRequest
from herald.settings import Settings
from tests.providers.support import (  # noqa: F401 - the fixtures http and state
    BASE,
    fake_provider,
    fakes_http,
    fakes_state,
    refusal,
)

pytestmark = pytest.mark.fast

NID = uuid.UUID("5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d")
TEAMS = f"{BASE}/teams/webhookb2/abc@def/IncomingWebhook/123/456"
DISCORD = f"{BASE}/discord/api/webhooks/1234567890/tok-en"
SETTINGS = Settings(chat_webhook_origins=BASE)


def _request(
    address: str, subject: str | None = None, body: str = "Deploy finished"
) -> SendRequest:
    return SendRequest(
        notification_id=NID,
        channel=Channel.chat,
        address=address,
        message=RenderedMessage(template_version=1, locale="en", subject=subject, body=body),
    )


def _provider(name: str, http: httpx.AsyncClient, **change: str) -> HttpProvider:
    return fake_provider(Channel.chat, name, http, SETTINGS, **change)


async def test_slack_request_is_the_documented_chat_post_message(
    http: httpx.AsyncClient, state: SinkState
) -> None:
    # https://api.slack.com/methods/chat.postMessage : POST https://slack.com/api/chat.postMessage,
    # "Authorization: Bearer xoxb-…", "Content-type: application/json; charset=utf-8",
    # {"channel": "C123ABC456", "text": "…"}; metadata {event_type, event_payload}.
    provider = _provider("slack", http)
    built = provider.build_request(_request("slack:C123ABC456"))
    assert str(built.url) == f"{BASE}/slack/api/chat.postMessage"
    assert built.headers["authorization"] == "Bearer xoxb-dev-token"
    assert built.headers["content-type"] == "application/json; charset=utf-8"
    assert json.loads(built.content) == {
        "channel": "C123ABC456",
        "text": "Deploy finished",
        "metadata": {"event_type": "herald_notification", "event_payload": {"id": str(NID)}},
    }
    message_id = await provider.deliver(_request("slack:C123ABC456"))
    (got,) = state.received("chat")
    assert message_id.startswith("C123ABC456/") and got.idempotency_key == str(NID)


@pytest.mark.parametrize(
    ("failure", "permanent", "provider_fault"),
    [
        ("channel_not_found", True, False),
        ("is_archived", True, False),
        ("missing_scope", True, True),
        ("token_revoked", True, True),
        ("internal_error", False, True),
        (429, False, True),
        (503, False, True),
    ],
)
async def test_slack_errors_map_onto_herald_classes(
    http: httpx.AsyncClient,
    state: SinkState,
    failure: str | int,
    permanent: bool,
    provider_fault: bool,
) -> None:
    state.add_rule(Rule(match="C123", fail_with=[failure], retry_after=3))
    refused = await refusal(_provider("slack", http).deliver(_request("slack:C123ABC456")))
    assert (refused.permanent, refused.provider_fault) == (permanent, provider_fault)
    if failure == 429:
        assert refused.retry_after == 3


async def test_slack_with_a_wrong_token_is_the_providers_fault(http: httpx.AsyncClient) -> None:
    wrong = _provider("slack", http, bot_token="xoxb-wrong")
    refused = await refusal(wrong.deliver(_request("slack:C1")))
    assert "invalid_auth" in str(refused) and refused.provider_fault


async def test_teams_request_is_an_adaptive_card_message(
    http: httpx.AsyncClient, state: SinkState
) -> None:
    # https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using#send-adaptive-cards-using-an-incoming-webhook
    provider = _provider("teams", http)
    built = provider.build_request(_request(f"teams:{TEAMS}", subject="Deploy"))
    assert str(built.url) == TEAMS and built.headers["content-type"] == "application/json"
    assert json.loads(built.content) == {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        {"type": "TextBlock", "text": "Deploy", "weight": "Bolder"},
                        {"type": "TextBlock", "text": "Deploy finished", "wrap": True},
                    ],
                },
            }
        ],
    }
    await provider.deliver(_request(f"teams:{TEAMS}"))
    (got,) = state.received("chat")
    assert got.to == TEAMS and got.body == "Deploy finished"


@pytest.mark.parametrize(
    ("name", "url", "retry_after"),
    [
        ("teams", TEAMS, 4),  # in the Retry-After header
        ("discord", DISCORD, 2.5),  # in the JSON body's retry_after
    ],
)
async def test_a_webhook_429_waits_for_its_retry_after(
    http: httpx.AsyncClient, state: SinkState, name: str, url: str, retry_after: float
) -> None:
    state.add_rule(Rule(match=f"/{name}/", fail_with=[429], retry_after=retry_after))
    refused = await refusal(_provider(name, http).deliver(_request(f"{name}:{url}")))
    assert not refused.permanent and refused.retry_after == retry_after


async def test_a_webhook_that_is_gone_is_the_recipients_failure(
    http: httpx.AsyncClient, state: SinkState
) -> None:
    state.add_rule(Rule(match="/teams/", fail_with=[404]))
    refused = await refusal(_provider("teams", http).deliver(_request(f"teams:{TEAMS}")))
    assert refused.permanent and not refused.provider_fault


async def test_discord_request_is_the_documented_execute_webhook(
    http: httpx.AsyncClient, state: SinkState
) -> None:
    # https://discord.com/developers/docs/resources/webhook#execute-webhook :
    # POST /webhooks/{id}/{token}?wait=true, JSON {"content": ≤2000 chars, "allowed_mentions"}.
    provider = _provider("discord", http)
    built = provider.build_request(_request(f"discord:{DISCORD}", subject="Deploy"))
    assert str(built.url) == f"{DISCORD}?wait=true"
    assert json.loads(built.content) == {
        "content": "**Deploy**\nDeploy finished",
        "allowed_mentions": {"parse": []},
    }
    message_id = await provider.deliver(_request(f"discord:{DISCORD}", body="x" * 5000))
    (got,) = state.received("chat")
    assert got.message_id == message_id and len(got.body) == 2000


async def test_each_address_goes_to_its_own_service(
    http: httpx.AsyncClient, state: SinkState
) -> None:
    settings = Settings(chat_slack_api_url=f"{BASE}/slack", chat_webhook_origins=BASE)
    chain = ProviderChain(
        [
            Route(provider, CircuitBreaker(provider.name, failure_threshold=5, reset_seconds=30))
            for provider in deployment_providers(settings, http)
        ]
    )
    assert chain.name == "slack/teams/discord"
    for address, provider in [
        ("slack:C1", "slack"),
        (f"teams:{TEAMS}", "teams"),
        (f"discord:{DISCORD}", "discord"),
    ]:
        assert (await chain.deliver_via(_request(address))).provider == provider
    assert [m.raw["provider"] for m in state.received("chat")] == ["slack", "teams", "discord"]


async def test_a_slack_address_without_slack_is_refused_not_failed_over(
    http: httpx.AsyncClient,
) -> None:
    teams = _provider("teams", http)
    chain = ProviderChain(
        [Route(teams, CircuitBreaker("teams", failure_threshold=1, reset_seconds=30))]
    )
    refused = await refusal(chain.deliver_via(_request("slack:C1")))
    assert refused.permanent and not refused.provider_fault
    assert chain.routes[0].breaker.allow()


def test_production_has_no_deployment_slack_unless_configured() -> None:
    production = Settings().model_copy(update={"env": "production"})
    client = httpx.AsyncClient()
    assert [p.name for p in deployment_providers(production, client)] == ["teams", "discord"]
    configured = production.model_copy(update={"chat_slack_bot_token": SecretStr("xoxb-real")})
    assert [p.name for p in deployment_providers(configured, client)] == [
        "slack",
        "teams",
        "discord",
    ]


async def test_a_webhook_address_that_is_not_allowed_is_never_called(
    http: httpx.AsyncClient, state: SinkState
) -> None:
    provider = build(Channel.chat, "teams", {}, Settings(), http)  # no fake origins allowed
    refused = await refusal(provider.deliver(_request(f"teams:{TEAMS}")))
    assert refused.permanent and not refused.provider_fault
    assert not state.requests


GOOD = [
    {"slack": "C0123ABCD"},
    {"slack": "#general"},
    {"teams": "https://contoso.webhook.office.com/webhookb2/a@b/IncomingWebhook/c/d"},
    {
        "teams": "https://prod-12.westus.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke"
    },
    {"discord": "https://discord.com/api/webhooks/123/abc"},
]
BAD = [
    ({"slack": "C0123\x00"}, "chat.slack"),
    ({"slack": "C" * 100_000}, "chat.slack"),
    ({"slack": "C1; DROP TABLE"}, "chat.slack"),
    ({"teams": "http://contoso.webhook.office.com/webhookb2/x"}, "chat.teams"),
    ({"teams": "https://evil.example.com/webhook.office.com"}, "chat.teams"),
    ({"teams": "https://169.254.169.254/latest/meta-data"}, "chat.teams"),
    ({"teams": "https://user:pw@contoso.webhook.office.com/x"}, "chat.teams"),
    ({"discord": "https://discord.com/channels/1/2"}, "chat.discord"),
    ({"discord": "https://discord.com.evil.io/api/webhooks/1/2"}, "chat.discord"),
    ({"discord": "https://discord.com:8443/api/webhooks/1/2"}, "chat.discord"),
    ({"discord": "https://[::1/api/webhooks/1/2"}, "chat.discord"),
    ({"slack": "C1", "teams": "https://a.webhook.office.com/x"}, "chat"),
    ({"matrix": "!room:example.org"}, "chat"),
    ({}, "chat"),
]


@pytest.mark.parametrize("address", GOOD)
def test_chat_addresses_the_api_takes(address: dict[str, str]) -> None:
    assert UserCreate(id="ada", chat=address).chat == address


@pytest.mark.parametrize(("address", "field"), BAD)
def test_chat_addresses_the_api_refuses_name_the_field(address: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        UserCreate(id="ada", chat=address)
    (error,) = caught.value.errors()
    assert error["loc"] == ("chat",) and f"{field} " in error["msg"]


def test_send_addresses_round_trip() -> None:
    for address in GOOD:
        assert dict([chat.decode(chat.encode(address))]) == address


async def test_check_is_slacks_auth_test_and_sends_nothing(
    http: httpx.AsyncClient, state: SinkState
) -> None:
    assert (await _provider("slack", http).check())[0] is True
    assert await _provider("slack", http, bot_token="xoxb-wrong").check() == (
        False,
        "slack invalid_auth",
    )
    assert (await _provider("teams", http).check())[0] is True
    assert not state.received() and not state.requests
