"""Push through the FCM HTTP v1 API (JSON POST, bearer OAuth 2.0 access token).

The access token is either given (``token``, a static one) or minted from a Google
service account (``service_account_json``, its key file) with the JWT-bearer grant:
an RS256 JWT signed with the account's key is exchanged at its ``token_uri`` for an
access token, which is kept until five minutes before it expires.
https://developers.google.com/identity/protocols/oauth2/service-account#httprest
https://firebase.google.com/docs/cloud-messaging/auth-server
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from activities.providers.base import ProviderError, probe_request
from activities.providers.http import HttpProvider, _error_text, _retry_after
from herald.contracts import Channel, SendRequest
from herald.settings import Settings

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Google takes assertions valid for an hour at most.
ASSERTION_SECONDS = 3600
# An access token is replaced this long before it expires, so none expires in flight.
REFRESH_MARGIN_SECONDS = 300
_ACCOUNT_FIELDS = ("project_id", "private_key_id", "private_key", "client_email", "token_uri")
# Where a key file sends its token requests: Google's token endpoints only, so a config
# cannot make the workers post elsewhere (a local fake is reached through ``base_url``).
_TOKEN_HOSTS = ("oauth2.googleapis.com", "accounts.google.com", "www.googleapis.com")


@dataclass(frozen=True)
class ServiceAccount:
    """The parts of a Google service account key file that mint access tokens."""

    project_id: str
    client_email: str
    private_key_id: str
    token_uri: str
    key: rsa.RSAPrivateKey = field(repr=False)

    @classmethod
    def read(cls, text: str) -> ServiceAccount:
        """The key file's account; ``ValueError`` says what is wrong, never a value."""
        try:
            parsed = json.loads(text)
        except ValueError:
            raise ValueError("service_account_json is not JSON") from None
        if not isinstance(parsed, dict):
            raise ValueError("service_account_json is not a JSON object")
        if parsed.get("type") != "service_account":
            raise ValueError("service_account_json needs 'type': 'service_account'")
        for name in _ACCOUNT_FIELDS:
            if not isinstance(parsed.get(name), str) or not parsed[name].strip():
                raise ValueError(f"service_account_json needs {name!r}")
        try:
            key = load_pem_private_key(parsed["private_key"].encode(), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise ValueError("service_account_json's private_key is not a PEM key") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("service_account_json's private_key is not an RSA key")
        token_uri = urlsplit(parsed["token_uri"])
        if token_uri.scheme != "https" or token_uri.hostname not in _TOKEN_HOSTS:
            raise ValueError("service_account_json's token_uri is not Google's token endpoint")
        if "@" not in parsed["client_email"]:
            raise ValueError("service_account_json's client_email is not an email address")
        return cls(
            project_id=parsed["project_id"],
            client_email=parsed["client_email"],
            private_key_id=parsed["private_key_id"],
            token_uri=parsed["token_uri"],
            key=key,
        )


class ServiceAccountAuth(httpx.Auth):
    """``Authorization: Bearer`` with an access token minted from a service account.

    The token is requested from ``token_url`` (the account's ``token_uri`` unless told)
    and kept until ``REFRESH_MARGIN_SECONDS`` before its ``expires_in``; concurrent
    sends share one request for it. A 401 from FCM drops it: a kept token is replaced at
    once and the message sent once more, a token just minted is FCM's refusal of the
    account. The token endpoint's own refusals are the provider's (``ProviderError``).
    """

    def __init__(
        self,
        account: ServiceAccount,
        token_url: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.account = account
        self.token_url = token_url or account.token_uri
        self.clock = clock
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = asyncio.Lock()

    def assertion(self) -> str:
        """The signed JWT the token endpoint exchanges (its ``aud`` is where it goes)."""
        issued = int(self.clock())
        claims = {
            "iss": self.account.client_email,
            "scope": FCM_SCOPE,
            "aud": self.token_url,
            "iat": issued,
            "exp": issued + ASSERTION_SECONDS,
        }
        headers = {"kid": self.account.private_key_id}
        return jwt.encode(claims, self.account.key, algorithm="RS256", headers=headers)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        for _ in range(2):
            async with self._lock:
                fresh = self._token is None or self.clock() >= self._renew_at
                if fresh:
                    answer = yield self._token_request(request)
                    await answer.aread()
                    self._keep(answer)
                token = self._token
            request.headers["Authorization"] = f"Bearer {token}"
            response = yield request
            if response.status_code != 401:
                return
            if self._token == token:
                self._token = None
            if fresh:
                return

    def _token_request(self, sending: httpx.Request) -> httpx.Request:
        # Under the message's timeout: the client sets none on requests an auth makes.
        return httpx.Request(
            "POST",
            self.token_url,
            data={"grant_type": JWT_BEARER, "assertion": self.assertion()},
            headers={"Accept": "application/json"},
            extensions={"timeout": sending.extensions.get("timeout", {})},
        )

    def _keep(self, response: httpx.Response) -> None:
        if not response.is_success:
            raise _token_refusal(response)
        try:
            payload = response.json()
            token, lifetime = str(payload["access_token"]), float(payload["expires_in"])
        except (ValueError, KeyError, TypeError) as err:
            raise ProviderError(
                f"FCM token endpoint: HTTP {response.status_code} with an unreadable body",
                permanent=False,
            ) from err
        self._token = token
        self._renew_at = self.clock() + max(0.0, lifetime - REFRESH_MARGIN_SECONDS)


def _token_refusal(response: httpx.Response) -> ProviderError:
    """Every refusal of the token endpoint is of our account, never of a recipient:
    5xx, 408 and 429 are transient, the rest (``invalid_grant``) permanent."""
    status = response.status_code
    transient = status >= 500 or status in (408, 429)
    try:
        payload = response.json()
        why = f"{payload['error']}: {payload.get('error_description', '')}".rstrip(": ")[:300]
    except (ValueError, KeyError, TypeError):
        why = _error_text(response)
    return ProviderError(
        f"FCM token endpoint HTTP {status}: {why}",
        permanent=not transient,
        retry_after=_retry_after(response) if transient else None,
        provider_fault=True,
    )


def token_url(account: ServiceAccount, base_url: str | None) -> str:
    """Where the account's tokens are requested: its ``token_uri``, or with a
    ``base_url`` (a local fake serving both APIs) that URI's path under ``base_url``."""
    if not base_url:
        return account.token_uri
    return base_url.rstrip("/") + urlsplit(account.token_uri).path


class FcmProvider(HttpProvider):
    """``POST {api}/v1/projects/{project}/messages:send``, authenticated by the static
    ``push_token`` or, given ``service_account``, by tokens minted from it (requested
    from ``token_url(service_account, token_base)``)."""

    def __init__(
        self,
        settings: Settings,
        client: httpx.AsyncClient,
        name: str = "fcm",
        service_account: ServiceAccount | None = None,
        token_base: str | None = None,
    ) -> None:
        super().__init__(client)
        self.name = name
        self._url = (
            f"{settings.push_api_url.rstrip('/')}/v1/projects/"
            f"{settings.push_project_id}/messages:send"
        )
        self._token: str | None = None
        if service_account is None:
            self._token = settings.push_token.get_secret_value()
        else:
            self.auth = ServiceAccountAuth(service_account, token_url(service_account, token_base))

    def build_request(self, request: SendRequest, validate_only: bool = False) -> httpx.Request:
        """FCM data values are strings; the idempotency key travels as ``herald_id``.
        ``validate_only`` asks FCM to check the request and deliver nothing."""
        data = {key: str(value) for key, value in request.data.items()}
        data["herald_id"] = request.idempotency_key
        message = {
            "token": request.address,
            "notification": {"title": request.message.subject or "", "body": request.message.body},
            "data": data,
        }
        body: dict[str, Any] = {"message": message}
        if validate_only:
            body["validate_only"] = True
        headers = {"Idempotency-Key": request.idempotency_key}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        return self._client.build_request("POST", self._url, json=body, headers=headers)

    async def check(self) -> tuple[bool, str]:
        """A ``validate_only`` send to a device token that cannot exist: FCM checks the
        credentials (and mints a token from a service account) first, then validates the
        message without delivering it; an invalid device token still means the
        credentials were accepted."""
        probe = probe_request(Channel.push, "herald-credentials-check")
        try:
            response = await self._client.send(
                self.build_request(probe, validate_only=True), auth=self.auth
            )
        except ProviderError as err:  # the token endpoint's refusal of the account
            return False, f"fcm: {err}"
        except httpx.HTTPError as err:
            return False, f"fcm unreachable: {type(err).__name__}"
        if response.is_success or response.status_code == 400:
            return True, "fcm accepted the credentials"
        return False, f"fcm answered HTTP {response.status_code}: {_error_text(response)}"

    def message_id(self, payload: Any) -> str:
        """FCM's ``name`` (``projects/<p>/messages/<id>``)."""
        return str(payload["name"])
