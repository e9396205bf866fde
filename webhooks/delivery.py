"""One webhook POST: to a checked address only, no redirects, at most 64 KiB of answer
read, 10 seconds in all."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from herald.webhooks import StatusWebhook, UnsafeUrl, check_url_shape, resolve

REQUEST_TIMEOUT_SECONDS = 10.0
MAX_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Answer:
    """What the endpoint answered (``status_code``) or why it could not (``error``)."""

    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        """Any 2xx ends the message."""
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        """410: the receiver wants nothing more; the endpoint is disabled."""
        return self.status_code == 410


def _pinned(url: str, host: str, address: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """The URL with the checked address in the host's place, the Host header, and the TLS
    server name, so the connection goes where the check looked and the certificate is
    still checked against the host's name."""
    parts = urlsplit(url)
    literal = f"[{address}]" if ":" in address else address
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    host_header = f"{host}:{parts.port}" if parts.port else host
    return (
        urlunsplit(parts._replace(netloc=netloc)),
        {"host": host_header},
        {"sni_hostname": host},
    )


async def post(
    client: httpx.AsyncClient,
    url: str,
    webhook: StatusWebhook,
    secret: str,
    *,
    allow_private: bool,
) -> Answer:
    """POST ``webhook`` to ``url``, signed with ``secret``."""
    started = time.monotonic()

    def answer(status_code: int | None, error: str | None) -> Answer:
        return Answer(status_code, error, int((time.monotonic() - started) * 1000))

    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
            target = url
            extra_headers: dict[str, str] = {}
            extensions: dict[str, str] = {}
            if not allow_private:
                host, port = check_url_shape(url, allow_private=False)
                addresses = await resolve(host, port, allow_private=False)
                target, extra_headers, extensions = _pinned(url, host, addresses[0])
            request = client.build_request(
                "POST",
                target,
                content=webhook.body().encode(),
                headers={**webhook.headers(secret), **extra_headers},
                extensions=extensions,
            )
            response = await client.send(request, stream=True, follow_redirects=False)
            try:
                read = 0
                async for chunk in response.aiter_raw():
                    read += len(chunk)
                    if read >= MAX_RESPONSE_BYTES:
                        break
            finally:
                await response.aclose()
            return answer(response.status_code, None)
    except UnsafeUrl as err:
        return answer(None, f"refused: {err}")
    except TimeoutError:
        return answer(None, f"timed out after {REQUEST_TIMEOUT_SECONDS:.0f}s")
    except httpx.HTTPError as err:
        return answer(None, f"{type(err).__name__}: {err}"[:500])
