"""Status webhooks, the parts the API and the dispatcher share: which URLs may be called,
the signing secret, the retry schedule and the request a status event becomes.

Requests follow Standard Webhooks (https://www.standardwebhooks.com): headers
``webhook-id`` (the same on every retry of one event, so a receiver can drop
duplicates), ``webhook-timestamp`` and ``webhook-signature: v1,<base64 HMAC-SHA256 of
"{id}.{timestamp}.{body}">`` keyed with the endpoint's secret.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import secrets
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from standardwebhooks import Webhook
from tenacity import RetryCallState

from herald.backoff import jittered_delays
from herald.contracts import Engagement, Status
from herald.settings import Settings

# Subscribing to this gets every status.
ALL_EVENTS = "*"
EVENT_NAMES = frozenset(
    {ALL_EVENTS, *(status.value for status in Status), *(kind.value for kind in Engagement)}
)


class UnsafeUrl(ValueError):
    """A webhook URL Herald will not call (scheme, or an address that is not public)."""


def new_secret() -> str:
    """A fresh signing secret in the Standard Webhooks format (``whsec_`` + base64)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, webhook_id: str, timestamp: datetime, body: str) -> str:
    """The ``webhook-signature`` header value for one request."""
    return str(Webhook(secret).sign(webhook_id, timestamp, body))


def webhook_id(event_id: int) -> str:
    """The id of a status event's webhook: stable across retries and endpoints."""
    return f"evt_{event_id}"


def check_url_shape(url: str, *, allow_private: bool) -> tuple[str, int]:
    """Host and port of a URL Herald may call, judged by its text alone; ``UnsafeUrl``
    otherwise. ``https`` only (``http`` too when private addresses are allowed)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise UnsafeUrl(f"not a valid URL: {err}") from err
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        raise UnsafeUrl("the URL must be https")
    if not parts.hostname:
        raise UnsafeUrl("the URL needs a host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("the URL may not carry credentials; authenticate with the signature")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def resolve(host: str, port: int, *, allow_private: bool) -> list[str]:
    """The addresses ``host`` resolves to, every one of them public unless private
    addresses are allowed; ``UnsafeUrl`` if it does not resolve or one is not public.

    The dispatcher connects to the addresses it checked (see ``webhooks/delivery.py``),
    so a name that resolves differently a moment later cannot redirect it.
    """
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except OSError as err:
        raise UnsafeUrl(f"the host {host!r} does not resolve") from err
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise UnsafeUrl(f"the host {host!r} does not resolve")
    if not allow_private:
        for address in addresses:
            if not _public(address):
                raise UnsafeUrl(
                    f"the host {host!r} resolves to {address}, which is not a public address"
                )
    return addresses


async def check_url(url: str, *, allow_private: bool) -> None:
    """``UnsafeUrl`` unless Herald may call ``url`` (shape and every resolved address)."""
    host, port = check_url_shape(url, allow_private=allow_private)
    await resolve(host, port, allow_private=allow_private)


def retry_delay(settings: Settings, attempt: int) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1 for the first): exponential
    from ``HERALD_WEBHOOK_RETRY_INITIAL_SECONDS`` up to ``..._MAXIMUM_SECONDS``, with
    jitter, the same schedule shape as every other wait in Herald."""
    wait = jittered_delays(
        settings.webhook_retry_initial_seconds, settings.webhook_retry_maximum_seconds
    )
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    return float(wait(state))


@dataclass(frozen=True)
class StatusWebhook:
    """One status event as it is sent to one endpoint."""

    event_id: int
    notification_id: Any
    status: str
    channel: str
    attempt: int
    at: datetime
    detail: str | None

    @property
    def webhook_id(self) -> str:
        """The ``webhook-id`` header and the body's ``id``."""
        return webhook_id(self.event_id)

    def body(self) -> str:
        """The JSON body: the same bytes on every retry."""
        return json.dumps(
            {
                "type": f"notification.{self.status}",
                "id": self.webhook_id,
                "notification_id": str(self.notification_id),
                "status": self.status,
                "channel": self.channel,
                "attempt": self.attempt,
                "at": self.at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                "detail": self.detail,
            },
            separators=(",", ":"),
        )

    def headers(self, secret: str, now: datetime | None = None) -> dict[str, str]:
        """Content type and the Standard Webhooks headers, signed at ``now``."""
        timestamp = (now or datetime.now(UTC)).replace(microsecond=0)
        return {
            "content-type": "application/json",
            "user-agent": "Herald-Webhooks/1.0",
            "webhook-id": self.webhook_id,
            "webhook-timestamp": str(int(timestamp.timestamp())),
            "webhook-signature": sign(secret, self.webhook_id, timestamp, self.body()),
        }
