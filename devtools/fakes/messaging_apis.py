"""Fakes of the Vonage SMS API, OneSignal's notifications API, Slack's
``chat.postMessage`` and Teams and Discord incoming webhooks.

Each refuses what the real one refuses, in that API's own answer shape: Vonage answers
``200`` with a per-message ``status`` (``4`` bad credentials, ``2`` a missing
parameter), OneSignal ``401``/``400`` with ``errors``, Slack ``200`` with ``ok: false``
(``not_authed``, ``invalid_auth``, ``channel_not_found``) or ``429`` with ``Retry-After``,
Teams ``400`` for a body that is not a message, Discord ``400``/``404`` with its JSON error
and ``429`` with ``retry_after``. A ``Rule`` of the sink (matched on the phone number,
OneSignal subscription id, Slack channel or webhook URL) makes one answer 5xx or 429, or
(Vonage) refuse with a status code; a Vonage rule's ``callbacks`` (``delivered``,
``undelivered:<err-code>``) post signed delivery receipts to the send's ``callback``.

Mounted in the provider sink under ``MOUNTS``: ``<sink>/vonage`` is a Vonage
``base_url``, ``<sink>/onesignal`` OneSignal's, ``<sink>/slack`` Slack's, and
``<sink>/teams/<anything>`` and ``<sink>/discord/api/webhooks/<id>/<token>`` are webhook
URLs (with the sink's origin in ``HERALD_CHAT_WEBHOOK_ORIGINS``).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx

from devtools.fakes.email_apis import Answer, ApiFakes, _Call, _json
from herald.receipts_vonage import DEVELOPMENT_SIGNATURE_SECRET, sign

if TYPE_CHECKING:
    from devtools.sinks import SinkState

MOUNTS = ("/vonage", "/onesignal", "/slack", "/teams", "/discord")


@dataclass(frozen=True)
class FakeCredentials:
    """The accounts the fakes know (development values)."""

    vonage_api_key: str = "devkey01"
    vonage_api_secret: str = "dev-vonage-secret"
    vonage_signature_secret: str = DEVELOPMENT_SIGNATURE_SECRET
    onesignal_app_id: str = "5eb5a37e-b458-11e3-ac11-000c2940e62c"
    onesignal_api_key: str = "os_v2_app_devkey"
    slack_bot_token: str = "xoxb-dev-token"

    def config(self, provider: str, base_url: str) -> dict[str, str]:
        """A provider ``config`` (API.md) that reaches the fake at ``base_url``."""
        configs = {
            "vonage": {
                "api_key": self.vonage_api_key,
                "api_secret": self.vonage_api_secret,
                "from": "Herald",
                "signature_secret": self.vonage_signature_secret,
            },
            "onesignal": {"app_id": self.onesignal_app_id, "api_key": self.onesignal_api_key},
            "slack": {"bot_token": self.slack_bot_token},
            "teams": {},
            "discord": {},
        }
        return configs[provider] | {"base_url": f"{base_url.rstrip('/')}/{provider}"}


class MessagingApiFakes(ApiFakes):
    """The five fakes, sharing a sink's state (rules and received messages)."""

    def __init__(self, state: SinkState, credentials: FakeCredentials | None = None) -> None:
        self.state = state
        self.credentials = credentials or FakeCredentials()
        self._routes: dict[str, Callable[[_Call], Answer]] = {
            "/vonage": self._vonage,
            "/onesignal": self._onesignal,
            "/slack": self._slack,
            "/teams": self._teams,
            "/discord": self._discord,
        }

    # --- shared -------------------------------------------------------------------

    @staticmethod
    def _json_body(call: _Call) -> Any:
        if call.content_type() != "application/json":
            raise ValueError("content type must be application/json")
        return json.loads(call.body)

    # --- Vonage SMS API: POST /sms/json --------------------------------------------
    # https://developer.vonage.com/en/api/sms

    def _vonage(self, call: _Call) -> Answer:
        if call.path == "/account/get-balance":
            # https://developer.vonage.com/en/api/account#getAccountBalance
            query = {k: v[0] for k, v in parse_qs(urlsplit(call.url).query).items()}
            creds = (self.credentials.vonage_api_key, self.credentials.vonage_api_secret)
            if (query.get("api_key"), query.get("api_secret")) != creds:
                return _json(
                    401, {"error-code": "401", "error-code-label": "authentication failed"}
                )
            return _json(200, {"value": 10.0, "autoReload": False})
        if call.method != "POST" or call.path != "/sms/json":
            return _json(405 if call.path == "/sms/json" else 404, {"error": "not found"})
        kind = call.content_type()
        if kind == "application/x-www-form-urlencoded":
            fields = {
                k: v[0] for k, v in parse_qs(call.body.decode(), keep_blank_values=True).items()
            }
        elif kind == "application/json":
            fields = {k: str(v) for k, v in json.loads(call.body).items()}
        else:
            return _json(
                200,
                {
                    "message-count": "1",
                    "messages": [{"status": "2", "error-text": "Missing api_key"}],
                },
            )

        def refused(status: str, text: str) -> Answer:
            return _json(
                200, {"message-count": "1", "messages": [{"status": status, "error-text": text}]}
            )

        for name in ("api_key", "api_secret"):
            if not fields.get(name):
                return refused("2", f"Missing {name}")
        if (fields["api_key"], fields["api_secret"]) != (
            self.credentials.vonage_api_key,
            self.credentials.vonage_api_secret,
        ):
            return refused("4", "Bad Credentials")
        for name in ("from", "to", "text"):
            if not fields.get(name):
                return refused("2", f"Missing {name} param")
        to = fields["to"]
        if not to.isdigit() or not 7 <= len(to) <= 15:
            return refused("3", "Invalid to param")
        if len(fields.get("client-ref", "")) > 100:
            return refused("3", "Invalid client-ref param")
        failure, rule = self._decide("sms", f"+{to}", fields.get("client-ref"))
        if failure is not None:
            if isinstance(failure, str) and failure.startswith("status:"):
                code = failure.split(":", 1)[1]
                return refused(code, f"refused with status {code}")
            return _json(self._status(failure), {"error": "sink failure"}, self._retry_after(rule))
        message_id = uuid.uuid4().hex[:16].upper()
        self._record(
            "sms",
            "vonage",
            call,
            fields,
            to=f"+{to}",
            body=fields["text"],
            key=fields.get("client-ref"),
            message_id=message_id,
        )
        reports = rule.callbacks if rule is not None and rule.callbacks else None
        if reports and fields.get("callback"):
            self._vonage_receipts(fields, message_id, reports)
        return _json(
            200,
            {
                "message-count": "1",
                "messages": [
                    {
                        "to": to,
                        "message-id": message_id,
                        "status": "0",
                        "remaining-balance": "10.00000000",
                        "message-price": "0.03330000",
                        "network": "23410",
                        "client-ref": fields.get("client-ref", ""),
                    }
                ],
            },
        )

    def _vonage_receipts(self, fields: dict[str, str], message_id: str, reports: list[str]) -> None:
        """POST a signed DLR per report to the send's ``callback``, as Vonage does."""

        def post() -> None:
            for report in reports:
                status, _, code = report.partition(":")
                status = {"undelivered": "failed"}.get(status, status)
                params = {
                    "msisdn": fields["to"],
                    "to": fields["from"],
                    "network-code": "23410",
                    "messageId": message_id,
                    "price": "0.03330000",
                    "status": status,
                    "scts": time.strftime("%y%m%d%H%M", time.gmtime()),
                    "err-code": code or "0",
                    "api-key": fields["api_key"],
                    "client-ref": fields.get("client-ref", ""),
                    "message-timestamp": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                    "timestamp": str(int(time.time())),
                    "nonce": str(uuid.uuid4()),
                }
                params["sig"] = sign(params, self.credentials.vonage_signature_secret)
                try:
                    httpx.post(fields["callback"], data=params, timeout=5.0)
                except httpx.HTTPError:
                    pass

        threading.Thread(target=post, name="vonage-dlr", daemon=True).start()

    # --- OneSignal: POST /api/v1/notifications ---------------------------------------
    # https://documentation.onesignal.com/reference/push-notification

    def _onesignal(self, call: _Call) -> Answer:
        if call.path != "/api/v1/notifications" or call.method not in ("GET", "POST"):
            return _json(404, {"errors": ["Not Found"]})
        auth = call.headers.get("authorization", "")
        if call.method == "GET":  # view notifications: the key must be the app's
            query = {k: v[0] for k, v in parse_qs(urlsplit(call.url).query).items()}
            if auth != f"Key {self.credentials.onesignal_api_key}":
                return _json(401, {"errors": ["Access denied."]})
            if query.get("app_id") != self.credentials.onesignal_app_id:
                return _json(400, {"errors": ["app_id not found"]})
            return _json(200, {"total_count": 0, "offset": 0, "limit": 1, "notifications": []})
        if auth not in (
            f"Key {self.credentials.onesignal_api_key}",
            f"Basic {self.credentials.onesignal_api_key}",
        ):
            return _json(
                401,
                {
                    "errors": [
                        "Access denied.  Please include an 'Authorization: "
                        "Key YOUR_REST_API_KEY' header."
                    ]
                },
            )
        try:
            body = self._json_body(call)
        except ValueError as err:
            return _json(400, {"errors": [str(err)]})
        if body.get("app_id") != self.credentials.onesignal_app_id:
            return _json(
                400,
                {
                    "errors": [
                        "app_id not found. You may be missing a Content-Type: "
                        "application/json header."
                    ]
                },
            )
        if not isinstance(body.get("contents"), dict) or not body["contents"].get("en"):
            return _json(
                400, {"errors": ["Message Notifications must have English language content"]}
            )
        ids = body.get("include_subscription_ids")
        if not isinstance(ids, list) or not ids:
            return _json(
                400,
                {
                    "errors": [
                        "You must include which players, segments, or tags "
                        "you wish to send this notification to."
                    ]
                },
            )
        key = body.get("idempotency_key")
        if key is not None:
            try:
                uuid.UUID(str(key))
            except ValueError:
                return _json(400, {"errors": ["idempotency_key must be a valid UUID"]})
        failure, rule = self._decide("push", str(ids[0]), key)
        if failure is not None:
            if failure == "unsubscribed":
                return _json(200, {"id": "", "errors": ["All included players are not subscribed"]})
            status = self._status(failure)
            return _json(status, {"errors": [f"sink answered {status}"]}, self._retry_after(rule))
        message_id = str(uuid.uuid5(uuid.NAMESPACE_URL, str(key))) if key else str(uuid.uuid4())
        self._record(
            "push",
            "onesignal",
            call,
            body,
            to=str(ids[0]),
            body=body["contents"]["en"],
            subject=(body.get("headings") or {}).get("en"),
            key=key,
            message_id=message_id,
        )
        return _json(200, {"id": message_id, "external_id": None})

    # --- Slack: POST /api/chat.postMessage -----------------------------------------
    # https://api.slack.com/methods/chat.postMessage

    def _slack(self, call: _Call) -> Answer:
        if call.path not in ("/api/chat.postMessage", "/api/auth.test"):
            return _json(404, {"ok": False, "error": "unknown_method"})
        auth = call.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return _json(200, {"ok": False, "error": "not_authed"})
        if auth != f"Bearer {self.credentials.slack_bot_token}":
            return _json(200, {"ok": False, "error": "invalid_auth"})
        if call.path == "/api/auth.test":  # https://api.slack.com/methods/auth.test
            return _json(
                200,
                {
                    "ok": True,
                    "team": "Herald Dev",
                    "team_id": "T0DEV",
                    "user": "herald",
                    "user_id": "U0DEV",
                    "bot_id": "B0DEV",
                },
            )
        try:
            body = self._json_body(call)
        except ValueError:
            return _json(200, {"ok": False, "error": "invalid_arguments"})
        channel = body.get("channel")
        if not channel:
            return _json(200, {"ok": False, "error": "channel_not_found"})
        if not body.get("text") and not body.get("blocks"):
            return _json(200, {"ok": False, "error": "no_text"})
        key = ((body.get("metadata") or {}).get("event_payload") or {}).get("id")
        # Rules match Herald's chat address (``slack:<channel>``) as well as the channel.
        failure, rule = self._decide("chat", f"slack:{channel}", key)
        if failure is not None:
            if isinstance(failure, str) and not failure.isdigit() and failure != "transient":
                return _json(200, {"ok": False, "error": failure})
            status = self._status(failure)
            return _json(
                status,
                {"ok": False, "error": "ratelimited" if status == 429 else "fatal_error"},
                self._retry_after(rule),
            )
        ts = f"{time.time():.6f}"
        self._record(
            "chat",
            "slack",
            call,
            body,
            to=str(channel),
            body=body.get("text", ""),
            key=key,
            message_id=f"{channel}/{ts}",
        )
        return _json(
            200,
            {
                "ok": True,
                "channel": channel,
                "ts": ts,
                "message": {"text": body.get("text"), "type": "message", "ts": ts},
            },
        )

    # --- Teams incoming webhook ------------------------------------------------------
    # https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using

    def _teams(self, call: _Call) -> Answer:
        if call.method != "POST":
            return Answer(405, b"Method Not Allowed")
        try:
            body = self._json_body(call)
        except ValueError:
            return Answer(400, b"Bad payload received by generic incoming webhook.")
        attachments = body.get("attachments") if isinstance(body, dict) else None
        card_ok = (
            isinstance(attachments, list)
            and attachments
            and all(
                isinstance(a, dict)
                and a.get("contentType") == "application/vnd.microsoft.card.adaptive"
                and isinstance(a.get("content"), dict)
                and a["content"].get("type") == "AdaptiveCard"
                for a in attachments
            )
        )
        if not (card_ok and body.get("type") == "message") and not (body or {}).get("text"):
            return Answer(400, b"Bad payload received by generic incoming webhook.")
        failure, rule = self._decide("chat", f"teams:{call.url}", None)
        if failure is not None:
            status = self._status(failure)
            return Answer(
                status,
                b"Microsoft Teams endpoint returned HTTP error %d" % status,
                self._retry_after(rule),
            )
        texts = [b.get("text", "") for a in attachments or [] for b in a["content"].get("body", [])]
        self._record(
            "chat",
            "teams",
            call,
            body,
            to=call.url,
            body="\n".join(texts) or body.get("text", ""),
            key=None,
            message_id="1",
        )
        return Answer(200, b"1", {"Content-Type": "text/plain"})

    # --- Discord execute webhook -----------------------------------------------------
    # https://discord.com/developers/docs/resources/webhook#execute-webhook

    def _discord(self, call: _Call) -> Answer:
        parts = call.path.strip("/").split("/")
        if len(parts) != 4 or parts[:2] != ["api", "webhooks"]:
            return _json(404, {"message": "Unknown Webhook", "code": 10015})
        try:
            body = self._json_body(call)
        except ValueError:
            return _json(400, {"message": "Cannot send an empty message", "code": 50006})
        content = body.get("content") if isinstance(body, dict) else None
        if not content:
            return _json(400, {"message": "Cannot send an empty message", "code": 50006})
        if len(content) > 2000:
            return _json(
                400,
                {
                    "code": 50035,
                    "errors": {
                        "content": {
                            "_errors": [
                                {
                                    "code": "BASE_TYPE_MAX_LENGTH",
                                    "message": "Must be 2000 or fewer in length.",
                                }
                            ]
                        }
                    },
                    "message": "Invalid Form Body",
                },
            )
        failure, rule = self._decide("chat", f"discord:{call.url.split('?', 1)[0]}", None)
        if failure is not None:
            status = self._status(failure)
            if status == 429:
                wait = rule.retry_after if rule is not None and rule.retry_after else 1.0
                return _json(
                    429,
                    {
                        "message": "You are being rate limited.",
                        "retry_after": wait,
                        "global": False,
                    },
                    {"Retry-After": str(int(wait) or 1)},
                )
            return _json(status, {"message": f"sink answered {status}", "code": 0})
        message_id = str(int(time.time() * 1000) << 22)
        self._record(
            "chat",
            "discord",
            call,
            body,
            to=call.url.split("?", 1)[0],
            body=content,
            key=None,
            message_id=message_id,
        )
        waited = "wait=true" in urlsplit(call.url).query
        if not waited:
            return Answer(204)
        return _json(
            200,
            {
                "id": message_id,
                "type": 0,
                "content": content,
                "channel_id": parts[2],
                "webhook_id": parts[2],
            },
        )
