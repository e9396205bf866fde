"""Delivery events of the HTTP email APIs, verified, as Herald receipts.

SendGrid's Event Webhook is signed with ECDSA (P-256, SHA-256) over the timestamp
header followed by the body; Mailgun's webhooks carry an HMAC-SHA256 of timestamp and
token keyed with the webhook signing key; Postmark's come with the basic-auth login
their URL was set up with. Each event names the notification and send cycle Herald
passed as custom arguments (``activities/providers/email_http.py``) and becomes a
``delivered``, ``undelivered`` (naming the reason) or logged-only report.

Where the verification secrets come from (``secrets_for``): for the deployment's own
accounts (``/v1/providers/<provider>/events``), settings (``HERALD_SENDGRID_WEBHOOK_
PUBLIC_KEY``, ``HERALD_MAILGUN_WEBHOOK_SIGNING_KEY``, ``HERALD_POSTMARK_WEBHOOK_USERNAME``
and ``_PASSWORD``), which outside production default to keys the local fakes sign
with; for a tenant's integration (``/v1/providers/<provider>/events/<integration id>``),
that integration's config (``integration_webhook_config`` in ``api/routes/
receipts_email.py`` opens it; ``integration_secrets`` reads it), and its events may only
name that tenant's notifications.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from herald.contracts import Receipt, Status
from herald.settings import Settings

PROVIDERS = ("sendgrid", "mailgun", "postmark")
# Signed events older (or further ahead) than this are refused as replays.
MAX_AGE_SECONDS = 15 * 60


class Forged(Exception):
    """The request is not the provider's (bad or missing signature or login)."""


class NotConfigured(Exception):
    """No verification secret for this provider here: nothing can be trusted."""


@dataclass(frozen=True)
class WebhookSecrets:
    """How one provider account's events are verified."""

    sendgrid_public_key: str | None = None
    mailgun_signing_key: str | None = None
    postmark_username: str | None = None
    postmark_password: str | None = None


# --- Development keys (what the local fakes sign with when settings name none) -------


def dev_sendgrid_private_key() -> ec.EllipticCurvePrivateKey:
    """The development event-webhook key pair (derived, so the fakes and the API agree
    without a key in the repository or on disk)."""
    seed = hashlib.sha256(b"herald development sendgrid event webhook").digest()
    return ec.derive_private_key(int.from_bytes(seed, "big"), ec.SECP256R1())


def public_key_text(key: ec.EllipticCurvePublicKey) -> str:
    """A public key as SendGrid shows it: base64 of its DER SubjectPublicKeyInfo."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


DEV_MAILGUN_SIGNING_KEY = "dev-mailgun-webhook-signing-key"
DEV_POSTMARK_LOGIN = ("herald", "dev-postmark-webhook-password")


def deployment_secrets(settings: Settings) -> WebhookSecrets:
    """The deployment's own accounts' secrets, from settings (development defaults
    outside production)."""
    dev = settings.env != "production"
    mailgun = settings.mailgun_webhook_signing_key
    password = settings.postmark_webhook_password
    return WebhookSecrets(
        sendgrid_public_key=settings.sendgrid_webhook_public_key
        or (public_key_text(dev_sendgrid_private_key().public_key()) if dev else None),
        mailgun_signing_key=mailgun.get_secret_value()
        if mailgun
        else (DEV_MAILGUN_SIGNING_KEY if dev else None),
        postmark_username=settings.postmark_webhook_username
        or (DEV_POSTMARK_LOGIN[0] if dev else None),
        postmark_password=password.get_secret_value()
        if password
        else (DEV_POSTMARK_LOGIN[1] if dev else None),
    )


# Keeps the Postmark webhook passwords apart from anything else signed with the secret.
_POSTMARK_PURPOSE = b"herald.postmark-webhook.v1:"


def postmark_webhook_login(settings: Settings, integration_id: uuid.UUID) -> tuple[str, str]:
    """The basic-auth login of an integration's Postmark webhook URL when its config sets
    none: the integration id and an HMAC of it (keyed from ``HERALD_UNSUBSCRIBE_SECRET``,
    as the bounce addresses are), so the URL is the tenant's own and knowing the id is not
    enough."""
    digest = hmac.new(
        settings.unsubscribe_secret.get_secret_value().encode(),
        _POSTMARK_PURPOSE + integration_id.bytes,
        hashlib.sha256,
    ).digest()
    return str(integration_id), base64.urlsafe_b64encode(digest[:24]).decode()


def integration_secrets(
    settings: Settings, integration_id: uuid.UUID, config: Mapping[str, str]
) -> WebhookSecrets:
    """A tenant integration's secrets, from its (opened) ``config``: ``webhook_public_key``
    (SendGrid), ``webhook_signing_key`` (Mailgun), ``webhook_username`` and
    ``webhook_password`` (Postmark; unset, ``postmark_webhook_login``)."""
    user, password = postmark_webhook_login(settings, integration_id)
    return WebhookSecrets(
        sendgrid_public_key=config.get("webhook_public_key") or None,
        mailgun_signing_key=config.get("webhook_signing_key") or None,
        postmark_username=config.get("webhook_username") or user,
        postmark_password=config.get("webhook_password") or password,
    )


# --- Verification -------------------------------------------------------------------


def _fresh(timestamp: str) -> None:
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError as err:
        raise Forged("timestamp is not a number") from err
    if age > MAX_AGE_SECONDS:
        raise Forged("timestamp too old")


def load_public_key(text: str) -> ec.EllipticCurvePublicKey:
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(text))
    except (ValueError, binascii.Error) as err:
        raise NotConfigured(f"the SendGrid verification key is not a public key: {err}") from err
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise NotConfigured("the SendGrid verification key is not an ECDSA key")
    return key


def verify_sendgrid(
    secrets: WebhookSecrets, body: bytes, signature: str | None, timestamp: str | None
) -> None:
    """``X-Twilio-Email-Event-Webhook-Signature``: base64 DER ECDSA over timestamp + body."""
    if not secrets.sendgrid_public_key:
        raise NotConfigured("no SendGrid event webhook verification key")
    key = load_public_key(secrets.sendgrid_public_key)
    if not signature or not timestamp:
        raise Forged("missing signature or timestamp")
    _fresh(timestamp)
    try:
        key.verify(
            base64.b64decode(signature, validate=True),
            timestamp.encode() + body,
            ec.ECDSA(hashes.SHA256()),
        )
    except (InvalidSignature, binascii.Error, ValueError) as err:
        raise Forged("invalid signature") from err


def mailgun_signature(signing_key: str, timestamp: str, token: str) -> str:
    """Mailgun's webhook signature: hex HMAC-SHA256 of timestamp + token."""
    return hmac.new(signing_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


def verify_mailgun(secrets: WebhookSecrets, payload: Mapping[str, Any]) -> None:
    """The body's ``signature`` object: ``timestamp``, ``token``, ``signature``."""
    if not secrets.mailgun_signing_key:
        raise NotConfigured("no Mailgun webhook signing key")
    signed = payload.get("signature")
    if not isinstance(signed, dict):
        raise Forged("missing signature")
    timestamp, token, given = (str(signed.get(k, "")) for k in ("timestamp", "token", "signature"))
    if not (timestamp and token and given):
        raise Forged("missing signature")
    _fresh(timestamp)
    expected = mailgun_signature(secrets.mailgun_signing_key, timestamp, token)
    if not hmac.compare_digest(expected.encode(), given.encode(errors="replace")):
        raise Forged("invalid signature")


def verify_postmark(secrets: WebhookSecrets, authorization: str | None) -> None:
    """HTTP basic auth with the login the webhook URL was set up with."""
    if not (secrets.postmark_username and secrets.postmark_password):
        raise NotConfigured("no Postmark webhook login")
    scheme, _, encoded = (authorization or "").partition(" ")
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError) as err:
        raise Forged("invalid basic auth") from err
    good_user = hmac.compare_digest(user.encode(), secrets.postmark_username.encode())
    good_password = hmac.compare_digest(password.encode(), secrets.postmark_password.encode())
    if scheme.lower() != "basic" or not (good_user and good_password):
        raise Forged("invalid login")


# --- Events as receipts -------------------------------------------------------------


@dataclass(frozen=True)
class EmailEvent:
    """One provider event about a message Herald sent."""

    notification_id: uuid.UUID
    cycle: int
    receipt: Receipt


def _ids(args: Any) -> tuple[uuid.UUID, int] | None:
    """Herald's notification id and cycle from an event's custom arguments."""
    if not isinstance(args, Mapping):
        return None
    try:
        notification_id = uuid.UUID(str(args["herald_notification"]))
        cycle = int(str(args.get("herald_cycle", "1")))
    except (KeyError, ValueError):
        return None
    return (notification_id, cycle) if cycle >= 1 else None


def _at(value: Any) -> datetime:
    try:
        if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
            return datetime.fromtimestamp(float(value), UTC)
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    return datetime.now(UTC)


def _receipt(
    provider: str, report: str, status: Status | None, at: datetime, reason: str | None
) -> Receipt:
    reason = (reason or "").strip()[:500] or None
    said = f"{provider} reports {report}" + (f": {reason}" if reason else "")
    return Receipt(
        status=status,
        source=provider,
        report=report,
        at=at,
        detail=said,
        error=f"{provider} {report}" + (f": {reason}" if reason else "")
        if status is Status.undelivered
        else None,
    )


def sendgrid_events(body: bytes) -> list[EmailEvent]:
    """SendGrid's events (a JSON array) that say what became of a Herald message:
    ``delivered``; ``bounce`` and ``dropped`` (undelivered, with SendGrid's reason);
    ``deferred`` (logged only). Opens, clicks and the like are not receipts."""
    events = json.loads(body)
    if not isinstance(events, list):
        raise ValueError("the body is not a JSON array of events")
    found = []
    for event in events:
        if not isinstance(event, dict):
            continue
        ids = _ids(event)
        kind = str(event.get("event", ""))
        if ids is None or kind not in ("delivered", "bounce", "dropped", "deferred"):
            continue
        status = {
            "delivered": Status.delivered,
            "bounce": Status.undelivered,
            "dropped": Status.undelivered,
        }.get(kind)
        report = f"{kind}:{event['type']}" if kind == "bounce" and event.get("type") else kind
        reason = " ".join(str(event[k]) for k in ("status", "reason") if event.get(k))
        at = _at(event.get("timestamp"))
        found.append(EmailEvent(*ids, _receipt("sendgrid", report, status, at, reason)))
    return found


def mailgun_events(payload: Mapping[str, Any]) -> list[EmailEvent]:
    """Mailgun's ``event-data``: ``delivered``; ``failed`` with ``severity`` permanent
    (undelivered) or temporary (logged only)."""
    data = payload.get("event-data")
    if not isinstance(data, dict):
        raise ValueError("event-data is missing")
    ids = _ids(data.get("user-variables"))
    kind = str(data.get("event", ""))
    if ids is None or kind not in ("delivered", "failed"):
        return []
    severity = str(data.get("severity", "permanent"))
    delivery = data.get("delivery-status")
    if not isinstance(delivery, dict):
        delivery = {}
    status: Status | None
    if kind == "delivered":
        status, report = Status.delivered, "delivered"
    else:
        status = Status.undelivered if severity == "permanent" else None
        report = f"failed:{severity}"
    reason = " ".join(
        str(part)
        for part in (
            delivery.get("code"),
            delivery.get("description") or delivery.get("message") or data.get("reason"),
        )
        if part
    )
    at = _at(data.get("timestamp"))
    return [EmailEvent(*ids, _receipt("mailgun", report, status, at, reason))]


# Postmark bounce types after which the message will not be delivered.
_POSTMARK_HARD = frozenset(
    {
        "HardBounce",
        "BadEmailAddress",
        "Blocked",
        "ManuallyDeactivated",
        "SpamNotification",
        "DMARCPolicy",
        "Unsubscribe",
    }
)


def postmark_events(payload: Mapping[str, Any]) -> list[EmailEvent]:
    """Postmark's ``Delivery`` and ``Bounce`` webhooks (a hard bounce is undelivered, a
    soft one logged only)."""
    ids = _ids(payload.get("Metadata"))
    kind = str(payload.get("RecordType", ""))
    if ids is None or kind not in ("Delivery", "Bounce"):
        return []
    if kind == "Delivery":
        at = _at(payload.get("DeliveredAt"))
        receipt = _receipt("postmark", "delivered", Status.delivered, at, None)
        return [EmailEvent(*ids, receipt)]
    bounce = str(payload.get("Type", "bounce"))
    status = Status.undelivered if bounce in _POSTMARK_HARD else None
    reason = str(payload.get("Description") or payload.get("Details") or "")
    at = _at(payload.get("BouncedAt"))
    return [EmailEvent(*ids, _receipt("postmark", f"bounce:{bounce}", status, at, reason))]
