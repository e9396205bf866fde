"""Fakes of the SendGrid, Mailgun, Postmark and Amazon SES v2 send APIs (and the
read-only endpoint of each that checks credentials: SendGrid ``GET /v3/scopes``, Mailgun
``GET /v3/domains/{domain}``, Postmark ``GET /server``, SES ``GET /v2/email/account``).

Each speaks its API as documented and refuses what the real one refuses: missing or
wrong credentials (401/403, an SES request whose SigV4 signature botocore does not
reproduce with the fake's secret), a wrong content type, missing required fields or an
address that is not one, with the status and error body the real API answers. Accepted
messages are recorded in the sink's ``SinkState`` (``Received.raw`` holds the request as
it arrived), and its ``Rule``s make a fake answer 503, 429 with ``Retry-After``, 401, or
400 for one address, in that API's own error shape.

The provider sink serves them under a prefix each (``MOUNTS``): a provider's
``base_url`` is ``<sink>/sendgrid``, ``<sink>/mailgun``, ``<sink>/postmark`` or
``<sink>/ses``. ``EmailApiFakes.transport()`` serves them to an ``httpx`` client in
process.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

if TYPE_CHECKING:
    from devtools.sinks import Rule, SinkState

MOUNTS = ("/sendgrid", "/mailgun", "/postmark", "/ses")
_ADDRESS = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")
_NAME_ADDRESS = re.compile(r"^(?:[^<>]*<)?([^<>]+?)>?$")


_MAILGUN_BAD_TO = "'to' parameter is not a valid address. please check documentation"


def _valid_address(text: str) -> bool:
    found = _NAME_ADDRESS.match(text.strip())
    return bool(found and _ADDRESS.match(found.group(1).strip()))


@dataclass(frozen=True)
class FakeCredentials:
    """The accounts the fakes know (development values, as the sinks' ``dev-token``)."""

    sendgrid_api_key: str = "SG.dev-sendgrid-key"
    mailgun_api_key: str = "dev-mailgun-key"
    mailgun_domain: str = "mg.herald.test"
    postmark_server_token: str = "dev-postmark-server-token"
    ses_access_key_id: str = "AKIAHERALDDEVFAKE001"
    ses_secret_access_key: str = "dev-ses-secret-access-key"
    ses_region: str = "us-east-1"

    def config(self, provider: str, base_url: str) -> dict[str, str]:
        """A provider ``config`` (API.md) that reaches the fake at ``base_url`` (the
        sink's URL and the provider's mount)."""
        configs = {
            "sendgrid": {"api_key": self.sendgrid_api_key},
            "mailgun": {"api_key": self.mailgun_api_key, "domain": self.mailgun_domain},
            "postmark": {"server_token": self.postmark_server_token},
            "ses": {
                "access_key_id": self.ses_access_key_id,
                "secret_access_key": self.ses_secret_access_key,
                "region": self.ses_region,
            },
        }
        return configs[provider] | {"base_url": f"{base_url.rstrip('/')}/{provider}"}


@dataclass
class Answer:
    """What a fake answers."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Answer:
    return Answer(
        status, json.dumps(payload).encode(), {"Content-Type": "application/json"} | (headers or {})
    )


@dataclass
class _Call:
    """One request, its headers lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    url: str

    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()


class ApiFakes:
    """Fakes of HTTP APIs served under one mount each (``/sendgrid``, ``/slack``…):
    ``_routes`` maps a mount to the handler of the calls under it. The fakes share a
    sink's ``state``: its rules decide their refusals, and it records what they accept."""

    state: SinkState
    _routes: dict[str, Callable[[_Call], Answer]]

    def handle(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> Answer | None:
        """The answer to a request under one of ``MOUNTS``; None for any other path.
        ``url`` is the request target (a path, or a full URL)."""
        parts = urlsplit(url)
        mount = "/" + parts.path.lstrip("/").split("/", 1)[0]
        route = self._routes.get(mount)
        if route is None:
            return None
        lowered = {name.lower(): value for name, value in headers.items()}
        full = url if parts.scheme else f"http://{lowered.get('host', 'localhost')}{url}"
        call = _Call(method.upper(), parts.path[len(mount) :] or "/", lowered, body, full)
        return route(call)

    def transport(self) -> httpx.MockTransport:
        """An ``httpx`` transport answering as the fakes do (404 off their mounts)."""

        def answer(request: httpx.Request) -> httpx.Response:
            found = self.handle(
                request.method, str(request.url), dict(request.headers), request.read()
            )
            if found is None:
                return httpx.Response(404, json={"error": "no such fake"})
            return httpx.Response(found.status, content=found.body, headers=found.headers)

        return httpx.MockTransport(answer)

    def _decide(self, channel: str, recipient: str, key: str | None) -> tuple[Any, Rule | None]:
        """The sink's failure for one message (None: accept it) and the rule that chose
        it, after the delay the rule asks for."""
        failure, rule = self.state.decide(recipient, channel, key, time.time())
        if rule is not None and rule.delay:
            time.sleep(rule.delay)
        return failure, rule

    @staticmethod
    def _status(failure: Any) -> int:
        """The HTTP status a rule's failure stands for (``transient`` is a 503)."""
        return 503 if failure == "transient" else int(failure)

    @staticmethod
    def _retry_after(rule: Rule | None) -> dict[str, str]:
        if rule is not None and rule.retry_after is not None:
            return {"Retry-After": str(int(rule.retry_after))}
        return {}

    def _record(
        self,
        channel: str,
        provider: str,
        call: _Call,
        parsed: Any,
        *,
        to: str,
        body: str,
        key: str | None,
        message_id: str,
        subject: str | None = None,
    ) -> None:
        """Record an accepted message; ``raw`` keeps the request as it arrived."""
        from devtools.sinks import Received  # the sink module serves these fakes

        self.state.record(
            Received(
                channel=channel,
                to=to,
                subject=subject,
                body=body,
                idempotency_key=key,
                message_id=message_id,
                raw={
                    "provider": provider,
                    "method": call.method,
                    "path": call.path,
                    "query": urlsplit(call.url).query,
                    "headers": call.headers,
                    "body": parsed,
                },
            )
        )


class EmailApiFakes(ApiFakes):
    """The four fakes, sharing a sink's state (rules and received messages)."""

    def __init__(self, state: SinkState, credentials: FakeCredentials | None = None) -> None:
        self.state = state
        self.credentials = credentials or FakeCredentials()
        self.outages: dict[str, tuple[int, Rule]] = {}
        self._routes: dict[str, Callable[[_Call], Answer]] = {
            "/sendgrid": self._sendgrid,
            "/mailgun": self._mailgun,
            "/postmark": self._postmark,
            "/ses": self._ses,
        }

    # --- shared -------------------------------------------------------------------

    def fail(self, provider: str, status: int = 503, retry_after: float | None = None) -> None:
        """Make one fake answer every authenticated send with ``status`` (an outage of
        that provider alone: the SMTP sink and the other fakes go on), until ``recover``."""
        from devtools.sinks import Rule  # the sink module serves these fakes

        self.outages[provider] = (status, Rule(match="", retry_after=retry_after))

    def recover(self, provider: str) -> None:
        """End ``fail``."""
        self.outages.pop(provider, None)

    def _outcome(
        self, provider: str, recipient: str, key: str | None
    ) -> tuple[int | None, Rule | None]:
        """The status a send through ``provider`` fails with (None: accept it), an outage
        first, and the rule that chose it."""
        outage = self.outages.get(provider)
        if outage is not None:
            return outage
        failure, rule = self._decide("email", recipient, key)
        if failure is None:
            return None, rule
        return self._status(failure), rule

    # --- SendGrid v3 mail/send ----------------------------------------------------

    @staticmethod
    def _sendgrid_error(status: int, message: str, field: str | None = None) -> Answer:
        return _json(status, {"errors": [{"message": message, "field": field, "help": None}]})

    def _sendgrid(self, call: _Call) -> Answer:
        if call.path not in ("/v3/mail/send", "/v3/scopes"):
            return self._sendgrid_error(404, "resource not found")
        if call.method != ("GET" if call.path == "/v3/scopes" else "POST"):
            return self._sendgrid_error(405, "method not allowed")
        auth = call.headers.get("authorization", "")
        if auth != f"Bearer {self.credentials.sendgrid_api_key}":
            return self._sendgrid_error(
                401, "The provided authorization grant is invalid, expired, or revoked"
            )
        if call.path == "/v3/scopes":
            return _json(200, {"scopes": ["mail.send", "scopes.read"]})
        if call.content_type() != "application/json":
            return self._sendgrid_error(415, "Content-Type should be application/json.")
        try:
            mail = json.loads(call.body)
            assert isinstance(mail, dict)
        except (ValueError, AssertionError):
            return self._sendgrid_error(400, "Bad Request")
        problem = _sendgrid_problem(mail)
        if problem is not None:
            return self._sendgrid_error(400, problem[1], problem[0])
        to = mail["personalizations"][0]["to"][0]["email"]
        key = (mail.get("headers") or {}).get("Message-ID")
        failure, rule = self._outcome("sendgrid", to, key)
        if failure == 400:
            return self._sendgrid_error(
                400, "Does not contain a valid address.", "personalizations.0.to.0.email"
            )
        if failure is not None:
            answer = self._sendgrid_error(failure, "sink answered")
            answer.headers |= self._retry_after(rule)
            return answer
        message_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        html = next((c["value"] for c in mail["content"] if c["type"] == "text/html"), "")
        self._record(
            "email",
            "sendgrid",
            call,
            mail,
            to=to,
            subject=mail.get("subject", ""),
            body=html,
            key=key,
            message_id=message_id,
        )
        return Answer(202, b"", {"X-Message-Id": message_id})

    # --- Mailgun messages ---------------------------------------------------------

    def _mailgun(self, call: _Call) -> Answer:
        match = re.fullmatch(r"/v3/([^/]+)/messages", call.path) or re.fullmatch(
            r"/v3/domains/([^/]+)", call.path
        )
        if match is None:
            return _json(404, {"message": "Not Found"})
        reading = call.path.startswith("/v3/domains/")
        if call.method != ("GET" if reading else "POST"):
            return _json(405, {"message": "Method Not Allowed"})
        expected = base64.b64encode(f"api:{self.credentials.mailgun_api_key}".encode()).decode()
        if call.headers.get("authorization") != f"Basic {expected}":
            return Answer(401, b"Forbidden", {"Content-Type": "text/plain"})
        if match.group(1) != self.credentials.mailgun_domain:
            return _json(404, {"message": f"Domain not found: {match.group(1)}"})
        if reading:
            return _json(
                200,
                {
                    "domain": {"name": match.group(1), "state": "active", "type": "custom"},
                    "receiving_dns_records": [],
                    "sending_dns_records": [],
                },
            )
        if call.content_type() != "application/x-www-form-urlencoded":
            # multipart/form-data is accepted by Mailgun too; Herald sends url-encoded.
            return _json(400, {"message": "Bad Request"})
        form = {
            key: values[0] for key, values in parse_qs(call.body.decode(errors="replace")).items()
        }
        for required in ("from", "to", "subject"):
            if not form.get(required):
                return _json(400, {"message": f"'{required}' parameter is missing"})
        if not (form.get("text") or form.get("html") or form.get("template")):
            return _json(400, {"message": "Need at least one of 'text', 'html' or 'template'"})
        for name in ("from", "to"):
            if not _valid_address(form[name]):
                return _json(
                    400,
                    {
                        "message": f"'{name}' parameter is not a valid address. "
                        "please check documentation"
                    },
                )
        to, key = form["to"], form.get("h:Message-ID")
        failure, rule = self._outcome("mailgun", to, key)
        if failure == 400:
            return _json(400, {"message": _MAILGUN_BAD_TO})
        if failure is not None:
            return _json(failure, {"message": "sink answered"}, self._retry_after(rule))
        message_id = f"<{datetime.now(UTC):%Y%m%d%H%M%S}.{uuid.uuid4().hex[:12]}@{match.group(1)}>"
        self._record(
            "email",
            "mailgun",
            call,
            form,
            to=to,
            subject=form["subject"],
            body=form.get("html") or form.get("text", ""),
            key=key,
            message_id=message_id,
        )
        return _json(200, {"id": message_id, "message": "Queued. Thank you."})

    # --- Postmark email -----------------------------------------------------------

    def _postmark(self, call: _Call) -> Answer:
        if call.path not in ("/email", "/server"):
            return _json(404, {"ErrorCode": 404, "Message": "Not found"})
        if call.method != ("GET" if call.path == "/server" else "POST"):
            return _json(405, {"ErrorCode": 405, "Message": "Method not allowed"})
        token = call.headers.get("x-postmark-server-token")
        if not token:
            return _json(
                401,
                {
                    "ErrorCode": 10,
                    "Message": "No Account or Server API tokens were supplied in the HTTP "
                    "headers. Please add a header for either X-Postmark-Server-Token or "
                    "X-Postmark-Account-Token.",
                },
            )
        if token != self.credentials.postmark_server_token:
            return _json(
                401,
                {
                    "ErrorCode": 10,
                    "Message": "The Server Token you provided in the X-Postmark-Server-Token "
                    "request header was invalid.",
                },
            )
        if call.path == "/server":
            return _json(200, {"ID": 1, "Name": "Herald", "DeliveryType": "Live"})
        if call.content_type() != "application/json":
            return _json(415, {"ErrorCode": 415, "Message": "Unsupported Media Type"})
        try:
            mail = json.loads(call.body)
            assert isinstance(mail, dict)
        except (ValueError, AssertionError):
            return _json(422, {"ErrorCode": 402, "Message": "Received invalid JSON input."})
        problem = _postmark_problem(mail)
        if problem is not None:
            return _json(422, {"ErrorCode": problem[0], "Message": problem[1]})
        to = mail["To"]
        headers = {h["Name"]: h["Value"] for h in mail.get("Headers") or []}
        failure, rule = self._outcome("postmark", to, headers.get("Message-ID"))
        if failure == 400:
            return _json(
                422,
                {
                    "ErrorCode": 406,
                    "Message": "You tried to send to recipient(s) that have been marked as "
                    "inactive.",
                },
            )
        if failure is not None:
            return _json(
                failure, {"ErrorCode": failure, "Message": "sink answered"}, self._retry_after(rule)
            )
        message_id = str(uuid.uuid4())
        self._record(
            "email",
            "postmark",
            call,
            mail,
            to=to,
            subject=mail.get("Subject", ""),
            body=mail.get("HtmlBody") or mail.get("TextBody", ""),
            key=headers.get("Message-ID"),
            message_id=message_id,
        )
        return _json(
            200,
            {
                "To": to,
                "SubmittedAt": datetime.now(UTC).isoformat(),
                "MessageID": message_id,
                "ErrorCode": 0,
                "Message": "OK",
            },
        )

    # --- Amazon SES v2 SendEmail --------------------------------------------------

    @staticmethod
    def _ses_error(status: int, kind: str, message: str, rule: Rule | None = None) -> Answer:
        headers = {"X-Amzn-ErrorType": kind}
        if rule is not None and rule.retry_after is not None:
            headers["Retry-After"] = str(int(rule.retry_after))
        return _json(status, {"message": message}, headers)

    def _ses(self, call: _Call) -> Answer:
        operation = {"/v2/email/outbound-emails": "POST", "/v2/email/account": "GET"}
        if call.path not in operation:
            return self._ses_error(404, "UnknownOperationException", "Unknown operation")
        if call.method != operation[call.path]:
            return self._ses_error(405, "UnknownOperationException", "Method not allowed")
        refused = self._sigv4_refusal(call)
        if refused is not None:
            return refused
        if call.path == "/v2/email/account":
            return _json(
                200,
                {
                    "DedicatedIpAutoWarmupEnabled": False,
                    "EnforcementStatus": "HEALTHY",
                    "ProductionAccessEnabled": True,
                    "SendingEnabled": True,
                    "SendQuota": {"Max24HourSend": 50000.0, "MaxSendRate": 14.0},
                },
            )
        if call.content_type() != "application/json":
            return self._ses_error(415, "UnsupportedMediaTypeException", "Unsupported Media Type")
        try:
            mail = json.loads(call.body)
            assert isinstance(mail, dict)
        except (ValueError, AssertionError):
            return self._ses_error(400, "SerializationException", "Invalid JSON")
        problem = _ses_problem(mail)
        if problem is not None:
            return self._ses_error(400, problem[0], problem[1])
        to = mail["Destination"]["ToAddresses"][0]
        simple = mail["Content"]["Simple"]
        headers = {h["Name"]: h["Value"] for h in simple.get("Headers") or []}
        failure, rule = self._outcome("ses", to, headers.get("Message-ID"))
        if failure == 400:
            return self._ses_error(400, "MessageRejected", f"Address blacklisted: {to}")
        if failure == 429:
            return self._ses_error(429, "TooManyRequestsException", "Too Many Requests", rule)
        if failure is not None:
            return self._ses_error(failure, "ServiceUnavailable", "sink answered", rule)
        message_id = f"0100{uuid.uuid4().hex}-000000"
        body = simple["Body"]
        self._record(
            "email",
            "ses",
            call,
            mail,
            to=to,
            subject=simple["Subject"]["Data"],
            body=(body.get("Html") or body.get("Text") or {}).get("Data", ""),
            key=headers.get("Message-ID"),
            message_id=message_id,
        )
        return _json(200, {"MessageId": message_id})

    def _sigv4_refusal(self, call: _Call) -> Answer | None:
        """Check the SigV4 signature the way SES does: recompute it with botocore from the
        request as received and the fake's secret for the access key it names."""
        auth = call.headers.get("authorization")
        amz_date = call.headers.get("x-amz-date")
        if not auth or not amz_date:
            return self._ses_error(
                403, "MissingAuthenticationTokenException", "Missing Authentication Token"
            )
        found = re.fullmatch(
            r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request,\s*"
            r"SignedHeaders=([^,]+),\s*Signature=([0-9a-f]{64})",
            auth,
        )
        if found is None:
            return self._ses_error(403, "IncompleteSignatureException", "Malformed Authorization")
        key_id, day, region, service, signed_headers, signature = found.groups()
        if key_id != self.credentials.ses_access_key_id:
            return self._ses_error(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        try:
            at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return self._ses_error(403, "IncompleteSignatureException", "Bad X-Amz-Date")
        if service != "ses" or region != self.credentials.ses_region or day != amz_date[:8]:
            return self._ses_error(
                403, "InvalidSignatureException", "Credential should be scoped correctly."
            )
        if abs((datetime.now(UTC) - at).total_seconds()) > 15 * 60:
            return self._ses_error(403, "InvalidSignatureException", "Signature expired")
        names = signed_headers.split(";")
        if "host" not in names or any(name not in call.headers for name in names):
            return self._ses_error(403, "IncompleteSignatureException", "Bad SignedHeaders")
        request = AWSRequest(
            method=call.method,
            url=call.url,
            data=call.body,
            headers={name: call.headers[name] for name in names},
        )
        request.context["timestamp"] = amz_date
        signer = SigV4Auth(
            Credentials(key_id, self.credentials.ses_secret_access_key), service, region
        )
        expected = signer.signature(
            signer.string_to_sign(request, signer.canonical_request(request)), request
        )
        if expected != signature:
            return self._ses_error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you "
                "provided. Check your AWS Secret Access Key and signing method.",
            )
        return None


def _sendgrid_problem(mail: dict[str, Any]) -> tuple[str, str] | None:
    """The first (field, message) SendGrid would refuse ``mail`` with."""
    people = mail.get("personalizations")
    if not isinstance(people, list) or not people:
        return "personalizations", "The personalizations field is required."
    for i, person in enumerate(people):
        to = person.get("to") if isinstance(person, dict) else None
        if not isinstance(to, list) or not to:
            return f"personalizations.{i}.to", "The to array is required."
        for j, recipient in enumerate(to):
            address = recipient.get("email") if isinstance(recipient, dict) else None
            if not isinstance(address, str) or not _ADDRESS.match(address):
                return f"personalizations.{i}.to.{j}.email", "Does not contain a valid address."
        custom = person.get("custom_args", {})
        if not isinstance(custom, dict) or not all(isinstance(v, str) for v in custom.values()):
            return f"personalizations.{i}.custom_args", "custom_args values must be strings."
    sender = mail.get("from")
    if not isinstance(sender, dict) or not _ADDRESS.match(str(sender.get("email", ""))):
        return "from.email", "The from email does not contain a valid address."
    if not mail.get("subject") and not all(p.get("subject") for p in people):
        return "subject", "The subject is required."
    content = mail.get("content")
    if not isinstance(content, list) or not content:
        return "content", (
            "Unless a valid template_id is provided, the content parameter is required."
        )
    for i, part in enumerate(content):
        if not isinstance(part, dict) or not part.get("type") or not part.get("value"):
            return f"content.{i}", "The content value must be a string at least one character."
    types = [part["type"] for part in content]
    if "text/plain" in types and types[0] != "text/plain":
        return "content.0.type", "If present, text/plain must be first."
    custom = mail.get("custom_args", {})
    if not isinstance(custom, dict) or not all(isinstance(v, str) for v in custom.values()):
        return "custom_args", "custom_args values must be strings."
    headers = mail.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        return "headers", "Invalid type. Expected: object of strings."
    reserved = {
        "x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type",
        "content-transfer-encoding", "to", "from", "subject", "reply-to", "cc", "bcc",
    }  # fmt: skip
    if any(name.lower() in reserved for name in headers):
        return "headers", "The headers you provided are reserved."
    return None


def _postmark_problem(mail: dict[str, Any]) -> tuple[int, str] | None:
    """The first (ErrorCode, Message) Postmark would refuse ``mail`` with."""
    if not mail.get("From"):
        return 300, "Invalid 'From' address: ''."
    if not _valid_address(str(mail["From"])):
        return 300, f"Invalid 'From' address: '{mail['From']}'."
    if not mail.get("To") or not _valid_address(str(mail["To"])):
        return 300, f"Error parsing 'To': Illegal email address '{mail.get('To', '')}'."
    if not (mail.get("HtmlBody") or mail.get("TextBody")):
        return 300, "Provide either email TextBody or HtmlBody or both."
    headers = mail.get("Headers", [])
    if not isinstance(headers, list) or not all(
        isinstance(h, dict) and isinstance(h.get("Name"), str) and isinstance(h.get("Value"), str)
        for h in headers
    ):
        return 300, "Headers must be a list of Name and Value objects."
    metadata = mail.get("Metadata", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(v, str) and len(k) <= 20 for k, v in metadata.items()
    ):
        return 300, "Metadata values must be strings, with field names of at most 20 characters."
    return None


_SES_TAG = re.compile(r"^[A-Za-z0-9_\-]{1,256}$")


def _ses_problem(mail: dict[str, Any]) -> tuple[str, str] | None:
    """The first (error type, message) SES v2 would refuse ``mail`` with."""
    if not mail.get("FromEmailAddress") or not _valid_address(str(mail["FromEmailAddress"])):
        return "BadRequestException", "Missing or invalid FromEmailAddress"
    to = (mail.get("Destination") or {}).get("ToAddresses")
    if not isinstance(to, list) or not to:
        return "BadRequestException", "Missing final '@domain'"
    if not all(isinstance(a, str) and _valid_address(a) for a in to):
        return "BadRequestException", "Illegal address"
    simple = (mail.get("Content") or {}).get("Simple")
    if not isinstance(simple, dict):
        return "BadRequestException", "Content is required (Simple, Raw or Template)"
    if not isinstance(simple.get("Subject"), dict) or "Data" not in simple["Subject"]:
        return "BadRequestException", "Subject is required"
    body = simple.get("Body")
    if not isinstance(body, dict) or not (body.get("Text") or body.get("Html")):
        return "BadRequestException", "Body is required"
    headers = simple.get("Headers", [])
    if not isinstance(headers, list) or not all(
        isinstance(h, dict) and h.get("Name") and isinstance(h.get("Value"), str) for h in headers
    ):
        return "BadRequestException", "Headers must be a list of Name and Value"
    for tag in mail.get("EmailTags", []):
        if not (
            isinstance(tag, dict)
            and _SES_TAG.match(str(tag.get("Name", "")))
            and _SES_TAG.match(str(tag.get("Value", "")))
        ):
            return "BadRequestException", "Invalid email tag"
    return None
