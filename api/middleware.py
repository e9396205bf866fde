"""ASGI middleware: request ids, a hard bound on request body size, and per-route
metrics with one access log line per request."""

from __future__ import annotations

import inspect
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from prometheus_client import Counter, Histogram
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.context import request_id_var
from herald.logs import log_context

REQUESTS = Counter(
    "herald_api_requests_total", "API requests answered", ["method", "route", "status"]
)
LATENCY = Histogram(
    "herald_api_request_seconds", "API request latency", ["method", "route", "status"]
)
access_log = logging.getLogger("api.access")
# Probes and scrapes would drown the access log.
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


class _HttpMiddleware:
    """Sees HTTP requests (``handle``); passes lifespan and other scopes straight on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class RequestIdMiddleware(_HttpMiddleware):
    """Takes ``X-Request-ID`` (or makes one), exposes it to handlers and log lines, and
    echoes it back.

    It also answers an unexpected exception with the app's ``Exception`` handler itself,
    while the request id is still bound: Starlette would otherwise handle it outermost,
    after this middleware has unbound it, so the 500's log line (the one with the
    traceback) would be the one line of the request without its id, and the 500 would
    lack the ``X-Request-ID`` header.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given[:128] if given and given.isprintable() else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            with log_context(request_id=request_id):
                try:
                    await self.app(scope, receive, send_with_id)
                except Exception as exc:
                    handler = _unexpected_error_handler(scope)
                    if started or handler is None:
                        raise  # too late for another answer, or nothing to give one
                    response = await handler(Request(scope), exc)
                    await response(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


def _unexpected_error_handler(
    scope: Scope,
) -> Callable[[Request, Exception], Awaitable[Response]] | None:
    """The ``Exception`` (or ``500``) handler of the app serving ``scope``, if any."""
    handlers = getattr(scope.get("app"), "exception_handlers", {})
    handler = handlers.get(Exception) or handlers.get(500)
    return handler if handler is not None and inspect.iscoroutinefunction(handler) else None


class AccessMiddleware(_HttpMiddleware):
    """Counts and times every request by method, route template and status, and logs it.

    It runs outside the body limit, so every answer is seen; one given before routing (a
    413, a path no route serves) is under the route ``unmatched``.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        except Exception:
            # A request that raised is still counted and logged (as the 500 it becomes).
            self._record(scope, status, time.perf_counter() - started)
            raise
        self._record(scope, status, time.perf_counter() - started)

    @staticmethod
    def _record(scope: Scope, status: int, elapsed: float) -> None:
        # The router has put the matched route into the scope, if the request got that far.
        route = getattr(scope.get("route"), "path", "unmatched")
        method = scope["method"]
        LATENCY.labels(method, route, str(status)).observe(elapsed)
        REQUESTS.labels(method, route, str(status)).inc()
        if route not in _QUIET_ROUTES:
            access_log.info(
                "request",
                extra={
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 1),
                },
            )


class BodyLimitMiddleware(_HttpMiddleware):
    """Answers 413 for a body over ``max_bytes``, declared or streamed, before any parsing.

    The body is read here (it is small by definition) and replayed to the app, so the
    limit holds for chunked uploads without a Content-Length too.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        bulk_max_bytes: int | None = None,
        is_bulk: Callable[[str], bool] | None = None,
    ) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes
        # Routes that take many items at once (``is_bulk`` of the path) get their own limit.
        self.bulk_max_bytes = bulk_max_bytes
        self.is_bulk = is_bulk

    def _limit(self, scope: Scope) -> int:
        if self.bulk_max_bytes is not None and self.is_bulk is not None:
            if self.is_bulk(scope.get("path", "")):
                return self.bulk_max_bytes
        return self.max_bytes

    async def _reject(self, send: Send, limit: int | None = None) -> None:
        limit = self.max_bytes if limit is None else limit
        body = json.dumps({"detail": f"request body is larger than {limit} bytes"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self._limit(scope)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reject(send, limit)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                await self._reject(send, limit)
                return
            if not message.get("more_body", False):
                break
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that hands out ``messages`` first, then defers to the real one."""
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed
