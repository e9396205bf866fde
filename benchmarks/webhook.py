"""One webhook endpoint for ``benchmarks/throughput.py --webhook``: a local HTTP receiver
answering 200 to every POST (in the benchmark's own event loop), subscribed to every
event of the benchmark tenant through the real API, and a way to wait until the
dispatcher owes it nothing."""

from __future__ import annotations

import time
from types import TracebackType

import aiohttp
from aiohttp import web
from sqlalchemy import text

from benchmarks.environment import until_none
from herald.ports import free_port
from herald.settings import Settings

_OWED = text("SELECT count(*) FROM webhook_messages WHERE state = 'pending'")


class WebhookReceiver:
    """An endpoint that takes every webhook with 200 and counts them (distinct ids too)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received = 0
        self.ids: set[str] = set()
        self.last_at = 0.0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """Where it listens."""
        return f"http://127.0.0.1:{self.port}/hook"

    async def _take(self, request: web.Request) -> web.Response:
        await request.read()
        self.received += 1
        self.ids.add(request.headers.get("webhook-id", ""))
        self.last_at = time.perf_counter()
        return web.Response(status=200)

    async def __aenter__(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/hook", self._take)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def subscribe(api_url: str, api_key: str, url: str) -> str:
    """Register ``url`` for every event of the key's tenant; the endpoint's id."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {api_key}"}) as http:
        async with http.post(f"{api_url}/v1/webhooks", json={"url": url, "events": ["*"]}) as r:
            body = await r.json()
            assert r.status == 201, body
            return str(body["id"])


async def unsubscribe(api_url: str, api_key: str, endpoint_id: str) -> None:
    """Remove the endpoint."""
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {api_key}"}) as http:
        async with http.delete(f"{api_url}/v1/webhooks/{endpoint_id}") as r:
            assert r.status in (200, 204), await r.text()


async def drained(settings: Settings, timeout: float = 600.0) -> None:
    """Wait until no webhook message is owed any more."""
    await until_none(settings, _OWED, 0.2, timeout)
