"""The shape SMS and push providers share: one HTTP request per message over a kept
``httpx.AsyncClient``, with the response status mapped to transient or permanent."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import httpx

from activities.providers.base import Provider, ProviderError
from herald.contracts import SendRequest

# Refusals of our account rather than of the message: another provider may still send it.
_PROVIDER_FAULT = frozenset({401, 402, 403})


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


def _error_text(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict):
            return str(error.get("message") or error.get("status") or error)[:300]
        return str(payload.get("message") or error)[:300]
    return str(payload)[:300]


class HttpProvider(Provider):
    """A provider that takes one message per HTTP POST."""

    auth: httpx.Auth | None = None

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    @abstractmethod
    def build_request(self, request: SendRequest) -> httpx.Request:
        """The provider-specific HTTP request for one message."""

    @abstractmethod
    def message_id(self, payload: Any) -> str:
        """The provider's id for an accepted message, from its JSON answer."""

    async def deliver(self, request: SendRequest) -> str:
        """POST the message; 5xx, 408 and 429 are transient, any other 4xx is permanent
        (401/402/403 being the provider's refusal of our account, not of the recipient)."""
        try:
            response = await self._client.send(self.build_request(request), auth=self.auth)
        except httpx.TimeoutException as err:
            raise ProviderError(f"timed out: {type(err).__name__}", permanent=False) from err
        except httpx.TransportError as err:
            raise ProviderError(f"{type(err).__name__}: {err}", permanent=False) from err
        if response.is_success:
            try:
                return self.accepted(response)
            except (ValueError, KeyError, TypeError) as err:
                raise ProviderError(
                    f"HTTP {response.status_code} with an unreadable body", permanent=False
                ) from err
        raise self.refusal(response)

    def accepted(self, response: httpx.Response) -> str:
        """The provider's message id from a successful answer (its JSON body unless the
        provider says otherwise)."""
        return self.message_id(response.json())

    def refusal(self, response: httpx.Response) -> ProviderError:
        """The failure an unsuccessful answer means; providers whose error codes say more
        than the HTTP status refine it."""
        transient = response.status_code >= 500 or response.status_code in (408, 429)
        return ProviderError(
            f"HTTP {response.status_code}: {_error_text(response)}",
            permanent=not transient,
            retry_after=_retry_after(response) if transient else None,
            # 5xx, 408 and 429 are the provider's; any other 4xx refuses this message.
            provider_fault=transient or response.status_code in _PROVIDER_FAULT,
        )
