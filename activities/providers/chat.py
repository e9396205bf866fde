"""The chat channel: Slack ``chat.postMessage`` (bot token), Microsoft Teams and Discord
incoming webhooks.

A send's address is ``<kind>:<target>`` (``herald/chat.py``), and each provider sends to
its own kind only (``serves``): a chain of chat providers is a choice by address, not a
failover order. Teams and Discord take no credentials (the webhook URL is the user's
address), so a deployment always has them; Slack needs a bot token, from a tenant's
``slack`` integration or the deployment's ``HERALD_CHAT_SLACK_BOT_TOKEN`` (in
development, the dev sink's Slack fake). None of the three takes an idempotency key;
Slack's message carries Herald's id in its ``metadata``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import SecretStr

from activities.providers.base import ProviderError
from activities.providers.http import HttpProvider, _error_text, _retry_after
from activities.providers.registry import provider_factory
from herald import chat
from herald.contracts import Channel, SendRequest
from herald.settings import Settings

SLACK_BASE_URL = "https://slack.com"
# The bot token of the dev sink's Slack fake (devtools/fakes/messaging_apis.py).
DEVELOPMENT_SLACK_TOKEN = "xoxb-dev-token"
DISCORD_MAX_CONTENT = 2000


def _text(request: SendRequest) -> str:
    subject = request.message.subject
    body = request.message.body
    return f"*{subject}*\n{body}" if subject else body


class _ChatProvider(HttpProvider):
    """Sends to addresses of one ``kind``."""

    kind: str

    def serves(self, request: SendRequest) -> bool:
        return chat.decode(request.address)[0] == self.kind

    def target(self, request: SendRequest, origins: list[str]) -> str:
        kind, target = chat.decode(request.address)
        try:
            return chat.check_target(kind, target, origins)
        except chat.BadChatAddress as err:
            raise ProviderError(str(err), permanent=True, provider_fault=False) from err

    async def deliver(self, request: SendRequest) -> str:
        try:
            return await super().deliver(request)
        except _Refused as refused:
            raise refused.error from None


class _Refused(Exception):
    """A refusal read from a successful HTTP answer (Slack's ``ok: false``)."""

    def __init__(self, error: ProviderError) -> None:
        super().__init__(str(error))
        self.error = error


# --- Slack ----------------------------------------------------------------------------
# https://api.slack.com/methods/chat.postMessage
# https://api.slack.com/apis/rate-limits (429 with Retry-After)

# The channel or message is refused: the notification's failure alone.
_SLACK_RECIPIENT = {
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "msg_too_long",
    "no_text",
    "restricted_action",
    "restricted_action_read_only_channel",
    "restricted_action_thread_only_channel",
    "restricted_action_non_threadable_channel",
    "too_many_attachments",
    "invalid_blocks",
    "invalid_metadata_format",
    "invalid_metadata_schema",
    "metadata_too_large",
    "user_is_restricted",
}
_SLACK_TRANSIENT = {
    "ratelimited",
    "rate_limited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
}


class SlackProvider(_ChatProvider):
    """``POST {base}/api/chat.postMessage`` with the bot token, JSON."""

    kind = "slack"

    def __init__(
        self, config: Mapping[str, str], settings: Settings, client: httpx.AsyncClient, name: str
    ) -> None:
        super().__init__(client)
        self.name = name
        token = config.get("bot_token")
        if not token:
            raise ValueError("slack config needs 'bot_token'")
        self._token = token
        self._base = (config.get("base_url") or SLACK_BASE_URL).rstrip("/")
        self._url = self._base + "/api/chat.postMessage"

    def build_request(self, request: SendRequest) -> httpx.Request:
        body = {
            "channel": self.target(request, []),
            "text": _text(request),
            "metadata": {
                "event_type": "herald_notification",
                "event_payload": {"id": request.idempotency_key},
            },
        }
        return self._client.build_request(
            "POST",
            self._url,
            json=body,
            headers={
                "Authorization": f"Bearer {self._token}",
                "Content-Type": "application/json; charset=utf-8",
            },
        )

    def accepted(self, response: httpx.Response) -> str:
        """``<channel>/<ts>`` when ``ok``; Slack answers errors with 200 and ``ok: false``."""
        payload = response.json()
        if payload.get("ok") is True:
            return f"{payload['channel']}/{payload['ts']}"
        error = str(payload.get("error") or "unknown_error")
        message = f"slack {error}"
        if error in _SLACK_TRANSIENT:
            raise _Refused(
                ProviderError(message, permanent=False, retry_after=_retry_after(response))
            )
        raise _Refused(
            ProviderError(message, permanent=True, provider_fault=error not in _SLACK_RECIPIENT)
        )

    def message_id(self, payload: Any) -> str:  # pragma: no cover - ``accepted`` reads it
        return f"{payload['channel']}/{payload['ts']}"

    async def check(self) -> tuple[bool, str]:
        """Slack's ``auth.test`` (https://api.slack.com/methods/auth.test): posts nothing."""
        try:
            response = await self._client.post(
                f"{self._base}/api/auth.test", headers={"Authorization": f"Bearer {self._token}"}
            )
            payload = response.json()
        except (httpx.HTTPError, ValueError) as err:
            return False, f"slack unreachable: {type(err).__name__}"
        if payload.get("ok") is True:
            return True, f"slack accepted the bot token (team {payload.get('team', '?')})"
        return False, f"slack {payload.get('error') or 'refused the token'}"


@provider_factory(Channel.chat, "slack")
def slack(
    config: Mapping[str, str], settings: Settings, http: httpx.AsyncClient, name: str
) -> SlackProvider:
    """``slack`` {bot_token, base_url?}."""
    return SlackProvider(config, settings, http, name)


# --- Incoming webhooks ----------------------------------------------------------------


class _WebhookProvider(_ChatProvider):
    """POST to the webhook URL that is the user's address."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient, name: str) -> None:
        super().__init__(client)
        self.name = name
        self._origins = chat.origins(settings.chat_webhook_origins)

    def refusal(self, response: httpx.Response) -> ProviderError:
        """A 4xx refuses this webhook (it is the address: removed, wrong, or the message
        is malformed); 5xx, 408 and 429 are transient, after ``Retry-After``."""
        transient = response.status_code >= 500 or response.status_code in (408, 429)
        return ProviderError(
            f"{self.kind} HTTP {response.status_code}: {_error_text(response)}",
            permanent=not transient,
            retry_after=self.retry_after(response) if transient else None,
            provider_fault=transient,
        )

    def retry_after(self, response: httpx.Response) -> float | None:
        return _retry_after(response)

    async def check(self) -> tuple[bool, str]:
        return True, f"{self.kind} needs no credentials: each user's address is its webhook"


# https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using#send-adaptive-cards-using-an-incoming-webhook
# https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using#rate-limiting-for-connectors


class TeamsProvider(_WebhookProvider):
    """A message with one Adaptive Card (what connectors and Workflows webhooks take)."""

    kind = "teams"

    def build_request(self, request: SendRequest) -> httpx.Request:
        blocks: list[dict[str, Any]] = []
        if request.message.subject:
            blocks.append(
                {"type": "TextBlock", "text": request.message.subject, "weight": "Bolder"}
            )
        blocks.append({"type": "TextBlock", "text": request.message.body, "wrap": True})
        card = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": blocks,
        }
        body = {
            "type": "message",
            "attachments": [
                {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
            ],
        }
        return self._client.build_request("POST", self.target(request, self._origins), json=body)

    def accepted(self, response: httpx.Response) -> str:
        """Connectors answer ``1``, Workflows ``202`` with no body: no message id. An old
        connector reports a throttled post as 200 with the error in its text."""
        if "HTTP error 429" in response.text:
            raise _Refused(ProviderError("teams throttled (429)", permanent=False))
        return response.headers.get("request-id") or "accepted"

    def message_id(self, payload: Any) -> str:  # pragma: no cover - ``accepted`` reads it
        return "accepted"


# https://discord.com/developers/docs/resources/webhook#execute-webhook
# https://discord.com/developers/docs/topics/rate-limits (429 body: retry_after seconds)


class DiscordProvider(_WebhookProvider):
    """``POST <webhook>?wait=true`` with ``content``; mentions are not parsed."""

    kind = "discord"

    def build_request(self, request: SendRequest) -> httpx.Request:
        subject, text = request.message.subject, request.message.body
        text = f"**{subject}**\n{text}" if subject else text
        if len(text) > DISCORD_MAX_CONTENT:
            text = text[: DISCORD_MAX_CONTENT - 1] + "…"
        body = {"content": text, "allowed_mentions": {"parse": []}}
        return self._client.build_request(
            "POST", self.target(request, self._origins), params={"wait": "true"}, json=body
        )

    def message_id(self, payload: Any) -> str:
        return str(payload["id"])

    def retry_after(self, response: httpx.Response) -> float | None:
        try:
            return max(0.0, float(response.json()["retry_after"]))
        except (ValueError, KeyError, TypeError):
            return _retry_after(response)


@provider_factory(Channel.chat, "teams")
def teams(
    config: Mapping[str, str], settings: Settings, http: httpx.AsyncClient, name: str
) -> TeamsProvider:
    """``teams`` {} (the webhook URL is the user's chat address)."""
    return TeamsProvider(settings, http, name)


@provider_factory(Channel.chat, "discord")
def discord(
    config: Mapping[str, str], settings: Settings, http: httpx.AsyncClient, name: str
) -> DiscordProvider:
    """``discord`` {} (the webhook URL is the user's chat address)."""
    return DiscordProvider(settings, http, name)


def deployment_providers(settings: Settings, http: httpx.AsyncClient) -> list[_ChatProvider]:
    """The deployment's chat providers: Slack when it has a bot token, Teams, Discord."""
    found: list[_ChatProvider] = []
    token = settings.chat_slack_bot_token
    if token is None and settings.env != "production":
        token = SecretStr(DEVELOPMENT_SLACK_TOKEN)
    if token is not None:
        config = {
            "bot_token": token.get_secret_value(),
            "base_url": settings.chat_slack_api_url,
        }
        found.append(SlackProvider(config, settings, http, "slack"))
    found.append(TeamsProvider(settings, http, "teams"))
    found.append(DiscordProvider(settings, http, "discord"))
    return found
