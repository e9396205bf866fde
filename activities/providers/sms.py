"""SMS through the Twilio Messages API (form-encoded POST, basic auth)."""

from __future__ import annotations

from typing import Any

import httpx

from activities.providers.http import HttpProvider
from herald.contracts import SendRequest
from herald.receipts import twilio_callback_url
from herald.settings import Settings


class TwilioProvider(HttpProvider):
    """``POST {api}/2010-04-01/Accounts/{sid}/Messages.json``."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient, name: str = "twilio") -> None:
        super().__init__(client)
        self.name = name
        self._account_url = (
            f"{settings.sms_api_url.rstrip('/')}/2010-04-01/Accounts/{settings.sms_account_sid}"
        )
        self._url = f"{self._account_url}/Messages.json"
        self.auth = httpx.BasicAuth(
            settings.sms_account_sid, settings.sms_auth_token.get_secret_value()
        )
        self._sender = settings.sms_from
        # Twilio reports delivered / undelivered here (api/routes/receipts.py).
        self._status_callback = twilio_callback_url(settings)

    def build_request(self, request: SendRequest) -> httpx.Request:
        """Form fields ``To``, ``From``, ``Body``, ``StatusCallback``; the idempotency key
        rides in a header."""
        return self._client.build_request(
            "POST",
            self._url,
            data={
                "To": request.address,
                "From": self._sender,
                "Body": request.message.body,
                "StatusCallback": self._status_callback,
            },
            headers={
                "I-Twilio-Idempotency-Token": request.idempotency_key,
                "Idempotency-Key": request.idempotency_key,
            },
        )

    def message_id(self, payload: Any) -> str:
        """Twilio's message ``sid``."""
        return str(payload["sid"])

    async def check(self) -> tuple[bool, str]:
        """``GET`` the account (Twilio's Accounts resource): nothing is sent."""
        try:
            response = await self._client.get(f"{self._account_url}.json", auth=self.auth)
        except httpx.HTTPError as err:
            return False, f"cannot reach Twilio: {type(err).__name__}"
        if response.is_success:
            return True, "Twilio accepted the account SID and auth token"
        return False, f"Twilio answered HTTP {response.status_code}"
