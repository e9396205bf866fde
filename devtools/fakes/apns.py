"""A fake of Apple's APNs provider API: HTTP/2 only, provider-token (ES256 JWT) auth.

Served by hypercorn (cleartext HTTP/2 with prior knowledge; APNs itself is TLS with
ALPN ``h2``). Like APNs it refuses HTTP/1.1, checks the ``authorization: bearer <jwt>``
against the key it was given (``kid`` and ``iss`` must match, ES256 only), answers
``403 ExpiredProviderToken`` for a token issued more than an hour ago (or before
``revoke_before``), and ``400 BadDeviceToken``, ``410 Unregistered``, ``400
BadMessageId``, ``400 MissingTopic``, ``413 PayloadTooLarge`` as the documentation says:
https://developer.apple.com/documentation/usernotifications/handling-notification-responses-from-apns

A sink ``Rule`` matching a device token makes it answer ``"unregistered"`` (410), a status
(429, 503 with its APNs reason) or ``"transient"``.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypercorn.asyncio import serve
from hypercorn.config import Config

if TYPE_CHECKING:
    from devtools.sinks import SinkState

TOKEN_MAX_AGE = 3600
MAX_PAYLOAD = 4096
_DEVICE_TOKEN = re.compile(r"^[0-9a-fA-F]{64}$")
_REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    429: "TooManyRequests",
    500: "InternalServerError",
    503: "ServiceUnavailable",
}


def new_key() -> tuple[str, str]:
    """A fresh P-256 key pair as PEM (private, public): what an ``.p8`` key is."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@dataclass
class Seen:
    """One request as the fake read it."""

    http_version: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int
    reason: str | None
    claims: dict[str, Any] | None = None


@dataclass
class ApnsFake:
    """The fake's account: one key (``key_id``, public key) of one team, one topic."""

    team_id: str
    key_id: str
    public_key: str
    topic: str
    state: SinkState | None = None
    # Tokens issued before this (epoch seconds) are expired, as if an hour had passed.
    revoke_before: float = 0.0
    seen: list[Seen] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        status, reason, extra, claims = self.answer(scope, headers, body)
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = body.decode(errors="replace")
        self.seen.append(
            Seen(scope["http_version"], scope["path"], headers, parsed, status, reason, claims)
        )
        payload = json.dumps({"reason": reason} | extra).encode() if reason else b""
        out = [(b"apns-id", headers.get("apns-id", str(uuid.uuid4())).encode())]
        if payload:
            out.append((b"content-type", b"application/json"))
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": payload})

    def answer(
        self, scope: dict[str, Any], headers: dict[str, str], body: bytes
    ) -> tuple[int, str | None, dict[str, Any], dict[str, Any] | None]:
        """Status, APNs ``reason`` (None: accepted), extra JSON fields, token claims."""
        if scope["http_version"] != "2":
            return 505, "HTTP/2 is required", {}, None
        path = scope["path"]
        if not path.startswith("/3/device/"):
            return 404, "BadPath", {}, None
        if scope["method"] != "POST":
            return 405, "MethodNotAllowed", {}, None
        auth = headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            return 403, "MissingProviderToken", {}, None
        token = auth.split(" ", 1)[1]
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(
                token,
                self.public_key,
                algorithms=["ES256"],
                options={"require": ["iss", "iat"], "verify_iat": False},
            )
        except jwt.PyJWTError:
            return 403, "InvalidProviderToken", {}, None
        if header.get("kid") != self.key_id or claims.get("iss") != self.team_id:
            return 403, "InvalidProviderToken", {}, claims
        issued = float(claims["iat"])
        if time.time() - issued > TOKEN_MAX_AGE or issued < self.revoke_before:
            return 403, "ExpiredProviderToken", {}, claims
        if not headers.get("apns-topic"):
            return 400, "MissingTopic", {}, claims
        if headers["apns-topic"] != self.topic:
            return 400, "TopicDisallowed", {}, claims
        if headers.get("apns-push-type", "alert") not in ("alert", "background", "voip"):
            return 400, "InvalidPushType", {}, claims
        if "apns-id" in headers:
            try:
                uuid.UUID(headers["apns-id"])
            except ValueError:
                return 400, "BadMessageId", {}, claims
        if len(body) > MAX_PAYLOAD:
            return 413, "PayloadTooLarge", {}, claims
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, "BadPayload" if body else "PayloadEmpty", {}, claims
        if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
            return 400, "PayloadEmpty", {}, claims
        device = path.removeprefix("/3/device/")
        if not _DEVICE_TOKEN.match(device):
            return 400, "BadDeviceToken", {}, claims
        if self.state is not None:
            failure, _ = self.state.decide(device, "push", headers.get("apns-id"), time.time())
            if failure == "unregistered":
                return 410, "Unregistered", {"timestamp": int(time.time() * 1000)}, claims
            if failure is not None:
                code = 503 if failure == "transient" else int(failure)
                return code, _REASONS.get(code, "BadRequest"), {}, claims
            self._record(device, headers, payload)
        return 200, None, {}, claims

    def _record(self, device: str, headers: dict[str, str], payload: dict[str, Any]) -> None:
        from devtools.sinks import Received

        assert self.state is not None
        alert = payload["aps"].get("alert") or {}
        self.state.record(
            Received(
                channel="push",
                to=device,
                subject=alert.get("title") if isinstance(alert, dict) else None,
                body=alert.get("body", "") if isinstance(alert, dict) else str(alert),
                idempotency_key=headers.get("apns-id"),
                message_id=headers.get("apns-id"),
                raw={"provider": "apns", "headers": headers, "body": payload},
            )
        )


class ApnsServer:
    """Runs an ``ApnsFake`` on a free local port in a thread of its own."""

    def __init__(self, fake: ApnsFake, host: str = "127.0.0.1", port: int = 0) -> None:
        self.fake = fake
        if port == 0:
            with socket.socket() as probe:
                probe.bind((host, 0))
                port = probe.getsockname()[1]
        self.host, self.port = host, port
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="apns-fake", daemon=True)
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        config = Config()
        config.bind = [f"{self.host}:{self.port}"]
        config.accesslog = None
        config.errorlog = None
        self._stop = asyncio.Event()
        self._loop.call_soon(self._ready.set)
        self._loop.run_until_complete(
            serve(self.fake, config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]
        )

    def start(self) -> ApnsServer:
        self._thread.start()
        self._ready.wait(5)
        deadline = time.time() + 5
        while time.time() < deadline:
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)
