"""SMS through the Vonage SMS API (``POST {base}/sms/json``, form-encoded, key and secret).

Vonage answers ``200`` whatever became of the message: each part's ``status`` in
``messages[]`` says (``0`` accepted). Herald's idempotency key rides in ``client-ref``,
which Vonage hands back in the delivery receipt; the receipt comes to ``callback``
(``herald/receipts_vonage.py``) and is matched by the ``message-id`` recorded at ``sent``.
Status codes: https://developer.vonage.com/en/messaging/sms/guides/troubleshooting-sms
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from activities.providers.base import ProviderError
from activities.providers.http import HttpProvider
from activities.providers.registry import provider_factory
from herald.contracts import Channel, SendRequest
from herald.receipts_vonage import vonage_callback_url
from herald.settings import Settings

DEFAULT_BASE_URL = "https://rest.nexmo.com"
# Worth retrying: throttled, internal error, too many binds.
_TRANSIENT = {"1", "5", "10"}
# Refusals of our account or configuration: another provider may still send it.
# 2 missing parameters, 4 bad credentials, 8 account barred, 9 quota (balance),
# 11 HTTP not enabled, 14 bad signature, 15 sender not allowed, 23 bad callback URL,
# 32 signature and secret both disallowed.
_OURS = {"2", "4", "8", "9", "11", "14", "15", "23", "32"}
# Anything else (3 invalid parameters, 6 invalid message, 7 number barred, 12 too long,
# 22 invalid network, 29 non-whitelisted destination, 33 number de-activated) refuses
# this message or recipient alone.


def _required(config: Mapping[str, str], key: str) -> str:
    value = config.get(key)
    if not value:
        raise ValueError(f"vonage config needs {key!r}")
    return value


class VonageProvider(HttpProvider):
    """One SMS per ``POST /sms/json``."""

    def __init__(
        self, config: Mapping[str, str], settings: Settings, client: httpx.AsyncClient, name: str
    ) -> None:
        super().__init__(client)
        self.name = name
        self._base = (config.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
        self._url = self._base + "/sms/json"
        self._key = _required(config, "api_key")
        self._secret = _required(config, "api_secret")
        self._sender = config.get("from") or settings.sms_from
        self._callback = config.get("callback") or vonage_callback_url(settings)

    def build_request(self, request: SendRequest) -> httpx.Request:
        """Form fields as documented (``to`` without its ``+``; ``type=unicode`` for text
        outside ASCII); ``client-ref`` is Herald's idempotency key."""
        body = request.message.body
        form = {
            "api_key": self._key,
            "api_secret": self._secret,
            "from": self._sender.lstrip("+"),
            "to": request.address.lstrip("+"),
            "text": body,
            "type": "text" if body.isascii() else "unicode",
            "client-ref": request.idempotency_key,
            "status-report-req": "1",
            "callback": self._callback,
        }
        return self._client.build_request("POST", self._url, data=form)

    def accepted(self, response: httpx.Response) -> str:
        """The first part's ``message-id`` once every part's ``status`` is ``0``."""
        payload = response.json()
        messages = payload["messages"]
        for part in messages:
            status = str(part.get("status", ""))
            if status != "0":
                raise _refused(status, str(part.get("error-text") or ""))
        return str(messages[0]["message-id"])

    def message_id(self, payload: Any) -> str:  # pragma: no cover - ``accepted`` reads it
        return str(payload["messages"][0]["message-id"])

    async def deliver(self, request: SendRequest) -> str:
        try:
            return await super().deliver(request)
        except _Refusal as refusal:
            raise refusal.error from None

    async def check(self) -> tuple[bool, str]:
        """``GET /account/get-balance`` with the key and secret: sends nothing."""
        try:
            response = await self._client.get(
                f"{self._base}/account/get-balance",
                params={"api_key": self._key, "api_secret": self._secret},
            )
        except httpx.HTTPError as err:
            return False, f"vonage unreachable: {type(err).__name__}"
        if response.status_code == 200:
            return True, "vonage accepted the API key and secret"
        return False, f"vonage answered HTTP {response.status_code}"


class _Refusal(Exception):
    """Carries a per-message refusal out of ``accepted`` (which reads the 200 answer)."""

    def __init__(self, error: ProviderError) -> None:
        super().__init__(str(error))
        self.error = error


def _refused(status: str, text: str) -> _Refusal:
    message = f"vonage status {status}: {text or 'refused'}"[:400]
    if status in _TRANSIENT:
        return _Refusal(ProviderError(message, permanent=False, retry_after=1.0))
    return _Refusal(ProviderError(message, permanent=True, provider_fault=status in _OURS))


@provider_factory(Channel.sms, "vonage")
def vonage(
    config: Mapping[str, str], settings: Settings, http: httpx.AsyncClient, name: str
) -> VonageProvider:
    """``vonage`` {api_key, api_secret, from, signature_secret?, base_url?}."""
    return VonageProvider(config, settings, http, name)
