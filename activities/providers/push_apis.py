"""Push through Apple's APNs (HTTP/2, ES256 provider tokens) and OneSignal's
notifications API.

Both take a UUID that names the message: Herald's notification id (cycle 1), or a UUID
derived from it and the cycle for a resend (``send_uuid``): APNs's ``apns-id`` and
OneSignal's ``idempotency_key`` (OneSignal drops a second request with the same key).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import httpx
import jwt

from activities.providers.base import Provider, ProviderError, probe_request
from activities.providers.http import HttpProvider, _error_text, _retry_after
from activities.providers.registry import provider_factory
from herald.contracts import Channel, SendRequest
from herald.settings import Settings


def send_uuid(request: SendRequest) -> str:
    """A UUID stable across the attempts of one send cycle."""
    if request.cycle == 1:
        return str(request.notification_id)
    return str(uuid.uuid5(request.notification_id, f"cycle-{request.cycle}"))


def _required(config: Mapping[str, str], key: str, provider: str) -> str:
    value = config.get(key)
    if not value:
        raise ValueError(f"{provider} config needs {key!r}")
    return value


# --- APNs -----------------------------------------------------------------------------
# https://developer.apple.com/documentation/usernotifications/sending-notification-requests-to-apns
# https://developer.apple.com/documentation/usernotifications/establishing-a-token-based-connection-to-apns
# https://developer.apple.com/documentation/usernotifications/handling-notification-responses-from-apns

APNS_HOSTS = {
    "production": "https://api.push.apple.com",
    "development": "https://api.sandbox.push.apple.com",
}
# APNs refuses tokens older than an hour and more than one new token per 20 minutes.
TOKEN_REFRESH_SECONDS = 50 * 60
# The device token or message is refused: this notification's failure alone.
_RECIPIENT = {
    "BadDeviceToken",
    "DeviceTokenNotForTopic",
    "Unregistered",
    "ExpiredToken",
    "PayloadEmpty",
    "PayloadTooLarge",
    "BadMessageId",
    "BadPriority",
    "BadExpirationDate",
    "BadCollapseId",
    "DuplicateHeaders",
}
_TRANSIENT = {
    "TooManyRequests",
    "TooManyProviderTokenUpdates",
    "IdleTimeout",
    "InternalServerError",
    "ServiceUnavailable",
    "Shutdown",
}


class ProviderToken:
    """The ES256 JWT APNs authenticates with, made anew before it is 50 minutes old."""

    def __init__(self, team_id: str, key_id: str, private_key: str) -> None:
        self._team_id, self._key_id, self._key = team_id, key_id, private_key
        self._token: str | None = None
        self._issued = 0.0

    def get(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        if self._token is None or now - self._issued >= TOKEN_REFRESH_SECONDS:
            self._issued = now
            self._token = jwt.encode(
                {"iss": self._team_id, "iat": int(now)},
                self._key,
                algorithm="ES256",
                headers={"kid": self._key_id},
            )
        return self._token

    def expire(self) -> None:
        """Forget the token (APNs said it expired): the next ``get`` makes a new one."""
        self._token = None


class ApnsProvider(Provider):
    """``POST /3/device/<token>`` over HTTP/2 (its own client: APNs speaks nothing else)."""

    def __init__(self, config: Mapping[str, str], settings: Settings, name: str) -> None:
        self.name = name
        environment = config.get("environment") or "production"
        if environment not in APNS_HOSTS:
            raise ValueError("apns environment is 'production' or 'development'")
        self._base = (config.get("base_url") or APNS_HOSTS[environment]).rstrip("/")
        self._topic = _required(config, "topic", "apns")
        self.token = ProviderToken(
            _required(config, "team_id", "apns"),
            _required(config, "key_id", "apns"),
            _required(config, "private_key", "apns"),
        )
        # Plain-text base URLs (a local fake) get HTTP/2 with prior knowledge.
        self._client = httpx.AsyncClient(
            http1=False,
            http2=True,
            timeout=settings.provider_timeout_seconds,
            verify=config.get("ca_file") or True,
        )

    def build_request(self, request: SendRequest) -> httpx.Request:
        """The documented payload: ``aps.alert`` {title, body}, custom data beside it."""
        alert: dict[str, str] = {"body": request.message.body}
        if request.message.subject:
            alert["title"] = request.message.subject
        payload: dict[str, Any] = {
            key: value for key, value in request.data.items() if key != "aps"
        }
        payload["aps"] = {"alert": alert}
        return self._client.build_request(
            "POST",
            f"{self._base}/3/device/{request.address}",
            json=payload,
            headers={
                "authorization": f"bearer {self.token.get()}",
                "apns-topic": self._topic,
                "apns-push-type": "alert",
                "apns-priority": "10",
                "apns-id": send_uuid(request),
            },
        )

    async def deliver(self, request: SendRequest) -> str:
        """Send; an ``ExpiredProviderToken`` refusal gets a new token and one more try."""
        response = await self._send(request)
        if response.status_code == 403 and _reason(response) == "ExpiredProviderToken":
            self.token.expire()
            response = await self._send(request)
        if response.status_code == 200:
            return response.headers.get("apns-id") or send_uuid(request)
        raise _apns_refusal(response)

    async def _send(self, request: SendRequest) -> httpx.Response:
        try:
            return await self._client.send(self.build_request(request))
        except httpx.TimeoutException as err:
            raise ProviderError(f"timed out: {type(err).__name__}", permanent=False) from err
        except httpx.TransportError as err:
            raise ProviderError(f"{type(err).__name__}: {err}", permanent=False) from err

    async def check(self) -> tuple[bool, str]:
        """A push to a device token that cannot exist: APNs checks the provider token and
        topic first (403, 400 TopicDisallowed) and only then refuses the device
        (``BadDeviceToken``), so nothing reaches anyone."""
        probe = probe_request(Channel.push, "00")
        try:
            response = await self._send(probe)
        except ProviderError as err:
            return False, f"apns unreachable: {err}"
        reason = _reason(response)
        if response.status_code == 400 and reason == "BadDeviceToken":
            return True, "apns accepted the provider token and topic"
        return False, f"apns answered {response.status_code} {reason}".strip()

    async def close(self) -> None:
        await self._client.aclose()


def _reason(response: httpx.Response) -> str:
    try:
        return str(response.json().get("reason", ""))
    except (ValueError, AttributeError):
        return ""


def _apns_refusal(response: httpx.Response) -> ProviderError:
    status, reason = response.status_code, _reason(response) or response.reason_phrase
    message = f"APNs {status} {reason}"
    if reason in _TRANSIENT or status >= 500:
        # Too many requests to one device is that device's; the rest are APNs's.
        return ProviderError(
            message,
            permanent=False,
            retry_after=_retry_after(response),
            provider_fault=reason != "TooManyRequests",
        )
    return ProviderError(message, permanent=True, provider_fault=reason not in _RECIPIENT)


@provider_factory(Channel.push, "apns")
def apns(
    config: Mapping[str, str], settings: Settings, http: httpx.AsyncClient, name: str
) -> ApnsProvider:
    """``apns`` {team_id, key_id, private_key (PEM), topic, environment?, base_url?}."""
    return ApnsProvider(config, settings, name)


# --- OneSignal ------------------------------------------------------------------------
# https://documentation.onesignal.com/reference/push-notification
# https://documentation.onesignal.com/docs/keys-and-ids (Authorization: Key <api key>)

ONESIGNAL_BASE_URL = "https://onesignal.com"


class OneSignalProvider(HttpProvider):
    """``POST /api/v1/notifications`` to one subscription id."""

    def __init__(
        self, config: Mapping[str, str], settings: Settings, client: httpx.AsyncClient, name: str
    ) -> None:
        super().__init__(client)
        self.name = name
        self._url = (config.get("base_url") or ONESIGNAL_BASE_URL).rstrip("/")
        self._url += "/api/v1/notifications"
        self._app_id = _required(config, "app_id", "onesignal")
        self._api_key = _required(config, "api_key", "onesignal")

    def build_request(self, request: SendRequest) -> httpx.Request:
        """The device address is a OneSignal subscription id; ``idempotency_key`` is
        Herald's (OneSignal keeps it 30 days and answers a repeat without sending)."""
        body: dict[str, Any] = {
            "app_id": self._app_id,
            "target_channel": "push",
            "include_subscription_ids": [request.address],
            "contents": {"en": request.message.body},
            "idempotency_key": send_uuid(request),
        }
        if request.message.subject:
            body["headings"] = {"en": request.message.subject}
        if request.data:
            body["data"] = request.data
        return self._client.build_request(
            "POST",
            self._url,
            json=body,
            headers={"Authorization": f"Key {self._api_key}", "Accept": "application/json"},
        )

    def accepted(self, response: httpx.Response) -> str:
        """OneSignal answers 200 with an empty ``id`` and ``errors`` when no subscription
        could be sent to: the recipient's refusal."""
        payload = response.json()
        if not payload.get("id"):
            errors = payload.get("errors") or "no subscribed recipient"
            raise _NotSent(
                ProviderError(
                    f"onesignal: {str(errors)[:300]}", permanent=True, provider_fault=False
                )
            )
        return str(payload["id"])

    def message_id(self, payload: Any) -> str:  # pragma: no cover - ``accepted`` reads it
        return str(payload["id"])

    async def deliver(self, request: SendRequest) -> str:
        try:
            return await super().deliver(request)
        except _NotSent as refused:
            raise refused.error from None

    async def check(self) -> tuple[bool, str]:
        """``GET /api/v1/notifications?app_id=…&limit=1`` (view notifications, with the
        same key): sends nothing."""
        try:
            response = await self._client.get(
                self._url,
                params={"app_id": self._app_id, "limit": "1"},
                headers={"Authorization": f"Key {self._api_key}"},
            )
        except httpx.HTTPError as err:
            return False, f"onesignal unreachable: {type(err).__name__}"
        if response.status_code == 200:
            return True, "onesignal accepted the app id and API key"
        return False, f"onesignal answered HTTP {response.status_code}: {_error_text(response)}"


class _NotSent(Exception):
    def __init__(self, error: ProviderError) -> None:
        super().__init__(str(error))
        self.error = error


@provider_factory(Channel.push, "onesignal")
def onesignal(
    config: Mapping[str, str], settings: Settings, http: httpx.AsyncClient, name: str
) -> OneSignalProvider:
    """``onesignal`` {app_id, api_key, base_url?}."""
    return OneSignalProvider(config, settings, http, name)
