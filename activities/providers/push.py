"""Push through the FCM HTTP v1 API (JSON POST, bearer token)."""

from __future__ import annotations

from typing import Any

import httpx

from activities.providers.http import HttpProvider
from herald.contracts import SendRequest
from herald.settings import Settings


class FcmProvider(HttpProvider):
    """``POST {api}/v1/projects/{project}/messages:send``."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient, name: str = "fcm") -> None:
        super().__init__(client)
        self.name = name
        self._url = (
            f"{settings.push_api_url.rstrip('/')}/v1/projects/"
            f"{settings.push_project_id}/messages:send"
        )
        self._token = settings.push_token.get_secret_value()

    def build_request(self, request: SendRequest) -> httpx.Request:
        """FCM data values are strings; the idempotency key travels as ``herald_id``."""
        data = {key: str(value) for key, value in request.data.items()}
        data["herald_id"] = request.idempotency_key
        message = {
            "token": request.address,
            "notification": {"title": request.message.subject or "", "body": request.message.body},
            "data": data,
        }
        return self._client.build_request(
            "POST",
            self._url,
            json={"message": message},
            headers={
                "Authorization": f"Bearer {self._token}",
                "Idempotency-Key": request.idempotency_key,
            },
        )

    def message_id(self, payload: Any) -> str:
        """FCM's ``name`` (``projects/<p>/messages/<id>``)."""
        return str(payload["name"])
