"""Local stand-ins for the outside world: a real SMTP server (aiosmtpd) and an HTTP server
that speaks the Twilio Messages and FCM HTTP v1 protocols (with Google's OAuth token
endpoint for FCM service accounts; ``GET /_sink/fcm/service-account`` gives the key file
of a development account it knows).

``herald dev`` runs them so a fresh machine can send without accounts anywhere, and the
tests use them with fault rules (fail the next N, always fail, be slow) per recipient.
Everything received is kept in memory and shown at ``GET /_sink/messages``, with when
each request arrived and when the sink accepted it; every request that reached a sink,
whatever it was answered, is kept too (``SinkState.requests``), so a test can tell which
attempt of a send produced which copy.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import itertools
import json
import random
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import jwt
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devtools.fakes.email_apis import Answer, ApiFakes, EmailApiFakes, _Call, _json
from devtools.fakes.messaging_apis import MessagingApiFakes
from devtools.provider_reports import post_twilio_callbacks, send_dsn


@dataclass
class Rule:
    """How the sink answers messages to recipients containing ``match``.

    ``fail_with`` answers are used up one per message, then ``always`` (if set) answers
    every message; ``delay`` seconds pass before any answer. ``on_accept`` is called with
    the recipient as the SMTP server accepts a message, just before its ``250`` goes out.
    """

    match: str
    fail_with: list[str | int] = field(default_factory=list)
    always: str | int | None = None
    delay: float = 0.0
    retry_after: float | None = None
    on_accept: Callable[[str], None] | None = None
    # Reports sent back after accepting: an SMTP sink rule with ``dsn`` ("5.1.1", "4.4.1")
    # sends a delivery status notification to the envelope sender through
    # ``SinkState.bounce_relay``; a Twilio sink rule with ``callbacks`` (MessageStatus
    # values, "undelivered:30003" with an error code) posts signed status callbacks to
    # the message's StatusCallback, before answering the send if ``callbacks_first``.
    dsn: str | None = None
    callbacks: list[str] | None = None
    callbacks_first: bool = False


@dataclass
class Received:
    """One message the sink accepted: ``at`` when it accepted it, ``arrived_at`` when the
    request reached it (earlier by any delay a rule imposed)."""

    channel: str
    to: str
    body: str
    idempotency_key: str | None
    subject: str | None = None
    message_id: str | None = None
    raw: Any = None
    # For email, the bytes as the SMTP server received them (what a mailbox provider reads).
    content: bytes | None = None
    at: float = field(default_factory=time.time)
    arrived_at: float | None = None

    @property
    def held(self) -> float:
        """Seconds between the request's arrival and the sink's acceptance."""
        return self.at - (self.arrived_at if self.arrived_at is not None else self.at)

    def public(self) -> dict[str, Any]:
        """A JSON-friendly view."""
        return {
            key: value
            for key, value in self.__dict__.items()
            if key not in ("raw", "content") and value is not None
        }


@dataclass(frozen=True)
class SinkRequest:
    """One request that reached a sink (one provider attempt), whatever it was answered."""

    channel: str
    to: str
    idempotency_key: str | None
    at: float
    # What the sink decided: None to accept, else the failure it answered.
    failure: str | int | None
    # Seconds the sink held its answer back (a slow or timing-out provider).
    delay: float = 0.0


class SinkState:
    """What the sinks received and how they should misbehave; thread-safe."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self.messages: list[Received | _UnreadEmail] = []
        self.attempts: dict[str, int] = {}
        self.rules: list[Rule] = []
        self.requests: list[SinkRequest] = []
        self.transient_rate = 0.0
        self.timeout_rate = 0.0
        self.timeout_seconds = 15.0
        self._random = random.Random(seed)
        # Where DSNs go (the bounce server), and the callbacks every SMS gets without a
        # rule saying otherwise (none: the tests ask for them per rule).
        self.bounce_relay: tuple[str, int] | None = None
        self.default_callbacks: list[str] = []

    def add_rule(self, rule: Rule) -> Rule:
        """Apply ``rule`` to later messages."""
        with self._lock:
            self.rules.append(rule)
        return rule

    def decide(
        self,
        recipient: str,
        channel: str = "",
        key: str | None = None,
        arrived: float | None = None,
    ) -> tuple[str | int | None, Rule | None]:
        """The failure to answer with (None: accept) and the rule that decided it; the
        request is logged in ``requests`` with its idempotency ``key`` and arrival time."""
        with self._lock:
            arrived = time.time() if arrived is None else arrived
            self.attempts[recipient] = self.attempts.get(recipient, 0) + 1
            failure, rule = self._decide(recipient)
            delay = rule.delay if rule is not None else 0.0
            self.requests.append(SinkRequest(channel, recipient, key, arrived, failure, delay))
            return failure, rule

    def _decide(self, recipient: str) -> tuple[str | int | None, Rule | None]:
        for rule in self.rules:
            if rule.match in recipient:
                if rule.fail_with:
                    return rule.fail_with.pop(0), rule
                return rule.always, rule
        roll = self._random.random()
        if roll < self.timeout_rate:
            return None, Rule(match="", delay=self.timeout_seconds)
        if roll < self.timeout_rate + self.transient_rate:
            return "transient", None
        return None, None

    def record(self, message: Received | _UnreadEmail) -> None:
        """Keep an accepted message."""
        with self._lock:
            self.messages.append(message)

    def received(self, channel: str | None = None, to: str | None = None) -> list[Received]:
        """Accepted messages, optionally for one channel or recipient."""
        with self._lock:
            # Emails are parsed when first asked for, not while the SMTP server accepts
            # them, so a load test does not pay for the parsing.
            read = [m.parse() if isinstance(m, _UnreadEmail) else m for m in self.messages]
            self.messages = list(read)
            return [
                m
                for m in read
                if (channel is None or m.channel == channel) and (to is None or m.to == to)
            ]


# The Message-ID header, read without parsing the whole message (the SMTP server logs
# every attempt's key as it arrives; full parsing waits until a test reads the message).
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


class _SmtpHandler:
    def __init__(self, state: SinkState) -> None:
        self.state = state

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        arrived = time.time()
        recipient = ",".join(envelope.rcpt_tos)
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        headers = content.split(b"\r\n\r\n", 1)[0]
        found = _MESSAGE_ID.search(headers)
        key = found.group(1).decode(errors="replace") if found else None
        failure, rule = self.state.decide(recipient, "email", key, arrived)
        if rule is not None and rule.delay:
            await asyncio.sleep(rule.delay)
        if failure == "transient":
            failure = "451 4.3.0 temporary failure, try again later"
        if failure is not None:
            return str(failure)
        self.state.record(_UnreadEmail(to=recipient, content=content, arrived_at=arrived))
        if rule is not None and rule.on_accept is not None:
            rule.on_accept(recipient)
        if rule is not None and rule.dsn and self.state.bounce_relay and envelope.mail_from:
            # After this answer, as a relay does once the recipient's server refused it.
            asyncio.get_running_loop().call_soon(
                asyncio.ensure_future,
                send_dsn(
                    self.state.bounce_relay,
                    bounce_to=envelope.mail_from,
                    recipient=envelope.rcpt_tos[0],
                    status=rule.dsn,
                    original_headers=headers,
                ),
            )
        return "250 2.0.0 OK queued"


@dataclass
class _UnreadEmail:
    """An email as the SMTP server accepted it, parsed into ``Received`` on first read."""

    to: str
    content: bytes
    arrived_at: float
    at: float = field(default_factory=time.time)

    def parse(self) -> Received:
        parsed = email.message_from_bytes(self.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        message_id = str(parsed["Message-ID"] or "")
        return Received(
            channel="email",
            to=self.to,
            subject=str(parsed["Subject"] or ""),
            message_id=message_id,
            idempotency_key=message_id,
            body=_email_text(parsed),
            raw=parsed,
            content=self.content,
            at=self.at,
            arrived_at=self.arrived_at,
        )


def _email_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html", "plain"))
    return str(part.get_content()) if part is not None else ""


_counter = itertools.count(1)


class _HttpHandler(BaseHTTPRequestHandler):
    server: _ProviderServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes: without TCP_NODELAY the body waits for the
    # client's delayed ACK of the headers, some 40 ms per answer.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _answer(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        account = re.fullmatch(r"/2010-04-01/Accounts/([^/]+)\.json", url.path)
        if account is not None:  # Twilio's Accounts resource: what a credentials check reads
            expected = f"{account[1]}:{self.server.sms_token}".encode()
            if self.headers.get("Authorization") != f"Basic {base64.b64encode(expected).decode()}":
                self._answer(401, {"code": 20003, "message": "Authenticate", "status": 401})
            else:
                self._answer(200, {"sid": account[1], "status": "active"})
            return
        if url.path == "/_sink/fcm/service-account":  # the development key file
            self._answer(200, self.server.fcm.dev_service_account())
            return
        if url.path != "/_sink/messages":
            answer = self.server.email_apis.handle("GET", self.path, dict(self.headers), b"")
            if answer is None:
                answer = self.server.messaging_apis.handle(
                    "GET", self.path, dict(self.headers), b""
                )
            if answer is None:
                self._answer(404, {"error": "not found"})
                return
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
            return
        query = parse_qs(url.query)
        channel = query.get("channel", [None])[0]
        self._answer(200, [m.public() for m in self.server.state.received(channel)])

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        path = urlparse(self.path).path
        # SendGrid, Mailgun, Postmark and SES under /sendgrid, /mailgun, /postmark, /ses.
        answer = self.server.email_apis.handle("POST", self.path, dict(self.headers), raw)
        # Vonage, OneSignal, Slack and the Teams and Discord webhooks likewise.
        if answer is None:
            answer = self.server.messaging_apis.handle("POST", self.path, dict(self.headers), raw)
        # FCM's messages:send and Google's token endpoint.
        if answer is None:
            answer = self.server.fcm.handle("POST", self.path, dict(self.headers), raw)
        if answer is not None:
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
        elif path.startswith("/2010-04-01/Accounts/") and path.endswith("/Messages.json"):
            self._twilio(path, raw)
        else:
            self._answer(404, {"error": {"code": 404, "message": f"no route {path}"}})

    def _fail(self, failure: str | int, rule: Rule | None) -> None:
        status = 503 if failure == "transient" else int(failure)
        headers = {}
        if rule is not None and rule.retry_after is not None:
            headers["Retry-After"] = str(rule.retry_after)
        self._answer(
            status,
            {"code": 20000 + status, "message": f"sink answered {status}", "status": status},
            headers,
        )

    def _twilio(self, path: str, raw: bytes) -> None:
        sid = path.split("/")[3]
        expected = base64.b64encode(f"{sid}:{self.server.sms_token}".encode()).decode()
        if self.headers.get("Authorization") != f"Basic {expected}":
            self._answer(401, {"code": 20003, "message": "Authenticate", "status": 401})
            return
        form = {key: values[0] for key, values in parse_qs(raw.decode()).items()}
        if not form.get("To") or not form.get("Body"):
            self._answer(
                400, {"code": 21604, "message": "A 'To' and 'Body' are required", "status": 400}
            )
            return
        key = self.headers.get("I-Twilio-Idempotency-Token") or self.headers.get("Idempotency-Key")
        arrived = time.time()
        if self._misbehave(form["To"], "sms", key, arrived):
            return
        message_sid = f"SM{uuid.uuid4().hex}"
        report = self._status_callbacks(form, message_sid)
        if report is not None and report[1]:
            report[0]()
        self.server.state.record(
            Received(
                channel="sms",
                to=form["To"],
                body=form["Body"],
                idempotency_key=key,
                message_id=message_sid,
                raw=form,
                arrived_at=arrived,
            )
        )
        self._answer(
            201,
            {
                "sid": message_sid,
                "to": form["To"],
                "from": form.get("From"),
                "body": form["Body"],
                "status": "queued",
            },
        )
        if report is not None and not report[1]:
            threading.Thread(target=report[0], name="status-callbacks", daemon=True).start()

    def _status_callbacks(
        self, form: dict[str, str], sid: str
    ) -> tuple[Callable[[], None], bool] | None:
        """What reporting back this message needs (and whether it goes before the answer):
        the callbacks its rule asks for, else the state's default ones."""
        url = form.get("StatusCallback")
        if not url:
            return None
        rule = next((r for r in self.server.state.rules if r.match in form["To"]), None)
        statuses = rule.callbacks if rule is not None and rule.callbacks is not None else None
        statuses = self.server.state.default_callbacks if statuses is None else statuses
        if not statuses:
            return None
        account_sid = self.path.split("/")[3]

        def report() -> None:
            post_twilio_callbacks(
                url,
                self.server.sms_token,
                list(statuses),
                sid=sid,
                account_sid=account_sid,
                to=form["To"],
                sender=form.get("From", ""),
            )

        return report, bool(rule is not None and rule.callbacks_first)

    def _misbehave(self, recipient: str, channel: str, key: str | None, arrived: float) -> bool:
        failure, rule = self.server.state.decide(recipient, channel, key, arrived)
        if rule is not None and rule.delay:
            time.sleep(rule.delay)
        if failure is None:
            return False
        self._fail(failure, rule)
        return True


# --- FCM ------------------------------------------------------------------------------
# https://firebase.google.com/docs/reference/fcm/rest/v1/projects.messages/send
# https://developers.google.com/identity/protocols/oauth2/service-account#httprest

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ACCESS_TOKEN_SECONDS = 3600
# What the token endpoint takes of a key file's assertion.
_ASSERTION_MAX_SECONDS = 3600
_CLOCK_SKEW = 60
_UNREASONABLE_TIMES = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
)


def new_service_account(
    project_id: str = "herald-dev", token_uri: str = "https://oauth2.googleapis.com/token"
) -> dict[str, str]:
    """A Google service account key file (its JSON) with a fresh RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    client_id = str(random.randrange(10**20, 10**21))
    client_email = f"herald-push@{project_id}.iam.gserviceaccount.com"
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": uuid.uuid4().hex + uuid.uuid4().hex[:8],
        "private_key": pem,
        "client_email": client_email,
        "client_id": client_id,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }


def _oauth_error(error: str, description: str) -> Answer:
    return _json(400, {"error": error, "error_description": description})


def _fcm_error(
    status: int, message: str, code: str, headers: dict[str, str] | None = None
) -> Answer:
    return _json(status, {"error": {"code": status, "message": message, "status": code}}, headers)


class FcmFake(ApiFakes):
    """FCM HTTP v1's ``POST /v1/projects/<p>/messages:send`` and Google's OAuth 2.0 token
    endpoint (``POST /token``), as strict as the real ones.

    The token endpoint takes only the JWT-bearer grant, form-encoded: an RS256 assertion
    signed by a registered service account key (``register``; ``dev_service_account``
    makes and registers one), ``kid`` naming that key, ``iss`` its ``client_email``,
    ``aud`` the URL it was posted to, no more than an hour between ``iat`` and ``exp``,
    not expired, ``scope`` including firebase.messaging. Anything else is a ``400`` with
    an OAuth ``error`` (``invalid_grant`` for the assertion). ``messages:send`` takes
    the tokens it issued until they expire (``revoke`` ends them early) and the static
    development token, and answers anything else ``401 UNAUTHENTICATED``. A sink
    ``Rule`` matching the device token makes it fail; ``token_outage`` makes the token
    endpoint answer that status. ``clock`` is the fake's time (a test moves it).
    """

    def __init__(self, state: SinkState, static_token: str | None = "dev-token") -> None:
        self.state = state
        self.static_token = static_token
        self.clock: Callable[[], float] = time.time
        self.token_outage: int | None = None
        # private_key_id -> (client_email, public key) of the accounts Google knows.
        self.keys: dict[str, tuple[str, rsa.RSAPublicKey]] = {}
        # Access token -> when it expires; the claims of every assertion exchanged.
        self.issued: dict[str, float] = {}
        self.grants: list[dict[str, Any]] = []
        # The bearer token of every messages:send request, whatever it was answered.
        self.bearers: list[str] = []
        self._dev_account: dict[str, str] | None = None
        self._lock = threading.Lock()
        self._routes: dict[str, Callable[[_Call], Answer]] = {
            "/v1": self._send,
            "/token": self._token,
        }

    def register(self, account: dict[str, str]) -> dict[str, str]:
        """Know ``account``'s key (as Google keeps a service account's public keys)."""
        private = serialization.load_pem_private_key(account["private_key"].encode(), None)
        assert isinstance(private, rsa.RSAPrivateKey)
        with self._lock:
            self.keys[account["private_key_id"]] = (account["client_email"], private.public_key())
        return account

    def dev_service_account(self) -> dict[str, str]:
        """The development service account (made on first use): its key file, to use
        with the sink's URL as the integration's ``base_url``."""
        with self._lock:
            account = self._dev_account
        if account is None:
            account = self.register(new_service_account())
            with self._lock:
                self._dev_account = self._dev_account or account
                account = self._dev_account
        return account

    def revoke(self) -> None:
        """End every access token issued so far (as a key's deletion does)."""
        with self._lock:
            self.issued.clear()

    def _token(self, call: _Call) -> Answer:
        if call.path != "/":
            return _json(404, {"error": "not_found"})
        if call.method != "POST":
            return _json(405, {"error": "invalid_request", "error_description": "POST only"})
        if self.token_outage is not None:
            return _json(self.token_outage, {"error": "internal_failure"})
        if call.content_type() != "application/x-www-form-urlencoded":
            return _oauth_error("invalid_request", "The request body must be form-encoded.")
        form = {k: v[0] for k, v in parse_qs(call.body.decode(errors="replace")).items()}
        if form.get("grant_type") != JWT_BEARER:
            return _oauth_error("unsupported_grant_type", "Invalid grant_type.")
        assertion = form.get("assertion")
        if not assertion:
            return _oauth_error("invalid_request", "Missing required parameter: assertion")
        claims = self._read_assertion(assertion, call.url)
        if isinstance(claims, str):
            return _oauth_error("invalid_grant", claims)
        token = f"ya29.fake-{secrets.token_urlsafe(32)}"
        with self._lock:
            self.issued[token] = self.clock() + ACCESS_TOKEN_SECONDS
            self.grants.append(claims)
        return _json(
            200,
            {"access_token": token, "expires_in": ACCESS_TOKEN_SECONDS - 1, "token_type": "Bearer"},
        )

    def _read_assertion(self, assertion: str, url: str) -> dict[str, Any] | str:
        """The assertion's claims, or why it is refused."""
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.InvalidTokenError:
            return "Invalid JWT: not a JWT."
        with self._lock:
            known = self.keys.get(str(header.get("kid")))
        if header.get("alg") != "RS256" or known is None:
            return "Invalid JWT Signature."
        issuer, public = known
        try:
            claims: dict[str, Any] = jwt.decode(
                assertion,
                public,
                algorithms=["RS256"],
                audience=url,
                issuer=issuer,
                # Times are checked below, against the fake's clock.
                options={
                    "require": ["iss", "aud", "iat", "exp"],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.InvalidSignatureError:
            return "Invalid JWT Signature."
        except (jwt.InvalidAudienceError, jwt.MissingRequiredClaimError):
            return "Invalid JWT: audience, issuer, iat and exp are required; aud is the token URL."
        except jwt.InvalidTokenError as err:
            return f"Invalid JWT: {type(err).__name__}."
        now = self.clock()
        issued, expires = claims["iat"], claims["exp"]
        if not isinstance(issued, int) or not isinstance(expires, int):
            return "Invalid JWT: iat and exp must be integers."
        too_long = expires - issued > _ASSERTION_MAX_SECONDS
        if too_long or issued > now + _CLOCK_SKEW or expires <= now:
            return _UNREASONABLE_TIMES
        if FCM_SCOPE not in str(claims.get("scope", "")).split():
            return "Invalid JWT: the scope does not include firebase.messaging."
        return claims

    def _authorized(self, call: _Call) -> bool:
        scheme, _, token = call.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        with self._lock:
            self.bearers.append(token)
            expires = self.issued.get(token)
        if expires is not None:
            return self.clock() < expires
        return self.static_token is not None and token == self.static_token

    def _send(self, call: _Call) -> Answer:
        if (
            call.method != "POST"
            or re.fullmatch(r"/projects/[^/]+/messages:send", call.path) is None
        ):
            return _fcm_error(404, f"no route /v1{call.path}", "NOT_FOUND")
        if not self._authorized(call):
            return _fcm_error(
                401, "Request had invalid authentication credentials.", "UNAUTHENTICATED"
            )
        try:
            body = json.loads(call.body)
            message = body["message"]
            token = message["token"]
        except (ValueError, KeyError, TypeError):
            return _fcm_error(400, "Invalid JSON payload", "INVALID_ARGUMENT")
        if body.get("validate_only") is True:  # checked, never delivered
            project = call.path.split("/")[2]
            return _json(200, {"name": f"projects/{project}/messages/fake_message_id"})
        key = (message.get("data") or {}).get("herald_id")
        arrived = time.time()
        failure, rule = self.state.decide(token, "push", key, arrived)
        if rule is not None and rule.delay:
            time.sleep(rule.delay)
        if failure is not None:
            status = 503 if failure == "transient" else int(failure)
            headers = {}
            if rule is not None and rule.retry_after is not None:
                headers["Retry-After"] = str(rule.retry_after)
            code = "UNAVAILABLE" if status >= 500 else "INVALID_ARGUMENT"
            return _fcm_error(status, f"sink answered {status}", code, headers)
        notification = message.get("notification", {})
        name = f"projects/sink/messages/{next(_counter)}"
        self.state.record(
            Received(
                channel="push",
                to=token,
                subject=notification.get("title"),
                body=notification.get("body", ""),
                idempotency_key=key,
                message_id=name,
                raw=message,
                arrived_at=arrived,
            )
        )
        return _json(200, {"name": name})


class _ProviderServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], state: SinkState, sms_token: str, push_token: str
    ) -> None:
        super().__init__(address, _HttpHandler)
        self.state = state
        self.sms_token = sms_token
        self.fcm = FcmFake(state, push_token)
        self.email_apis = EmailApiFakes(state)
        self.messaging_apis = MessagingApiFakes(state)


class Sinks:
    """An SMTP sink and a Twilio/FCM sink sharing one ``SinkState``; start and stop together."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        smtp_port: int = 1025,
        http_port: int = 8025,
        sms_token: str = "dev-token",
        push_token: str = "dev-token",
    ) -> None:
        self.state = SinkState()
        self.host = host
        self._smtp = Controller(_SmtpHandler(self.state), hostname=host, port=smtp_port)
        self._http = _ProviderServer((host, http_port), self.state, sms_token, push_token)
        # A short poll interval so that stop() returns at once rather than in half a second.
        self._thread = threading.Thread(
            target=self._http.serve_forever, args=(0.05,), name="provider-sink", daemon=True
        )

    @property
    def smtp_port(self) -> int:
        """The SMTP port."""
        return int(self._smtp.port)

    @property
    def email_apis(self) -> EmailApiFakes:
        """The SendGrid/Mailgun/Postmark/SES fakes the HTTP sink serves (their outages)."""
        return self._http.email_apis

    @property
    def fcm(self) -> FcmFake:
        """The FCM and Google token endpoint fake the HTTP sink serves (its accounts)."""
        return self._http.fcm

    @property
    def http_url(self) -> str:
        """Base URL of the Twilio/FCM sink (use as both SMS and push API URL)."""
        return f"http://{self.host}:{self._http.server_address[1]}"

    def start(self) -> Sinks:
        """Start both servers in background threads."""
        self._smtp.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop both servers."""
        self._http.shutdown()
        self._http.server_close()
        self._smtp.stop()
