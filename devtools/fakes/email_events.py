"""Delivery events as the email APIs post them to a webhook, signed as they sign them:
SendGrid's Event Webhook (ECDSA P-256 over timestamp + body), Mailgun's webhooks
(HMAC-SHA256 of timestamp + token) and Postmark's (basic auth on the URL)."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from herald.receipts_email import (
    DEV_MAILGUN_SIGNING_KEY,
    DEV_POSTMARK_LOGIN,
    dev_sendgrid_private_key,
    mailgun_signature,
)


def sendgrid_events(
    events: list[dict[str, Any]],
    key: ec.EllipticCurvePrivateKey | None = None,
    timestamp: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one Event Webhook POST (signed with ``key``, by default
    the development key the API verifies with when none is configured)."""
    body = json.dumps(events).encode()
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = (key or dev_sendgrid_private_key()).sign(
        stamp.encode() + body, ec.ECDSA(hashes.SHA256())
    )
    return body, {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
    }


def sendgrid_bounce(
    notification_id: str, email: str, cycle: int = 1, reason: str = "550 5.1.1 unknown user"
) -> dict[str, Any]:
    """A ``bounce`` event for a message Herald sent (its custom args at the top level)."""
    return {
        "email": email,
        "timestamp": int(time.time()),
        "event": "bounce",
        "type": "bounce",
        "status": "5.1.1",
        "reason": reason,
        "sg_event_id": secrets.token_urlsafe(16),
        "sg_message_id": f"{secrets.token_urlsafe(16)}.filter0001.1-1.0",
        "herald_notification": notification_id,
        "herald_cycle": str(cycle),
    }


def mailgun_event(
    event_data: Mapping[str, Any],
    signing_key: str = DEV_MAILGUN_SIGNING_KEY,
    timestamp: int | None = None,
) -> dict[str, Any]:
    """A Mailgun webhook body: ``signature`` and ``event-data``."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    token = secrets.token_hex(25)
    return {
        "signature": {
            "timestamp": stamp,
            "token": token,
            "signature": mailgun_signature(signing_key, stamp, token),
        },
        "event-data": dict(event_data),
    }


def mailgun_failed(
    notification_id: str, email: str, cycle: int = 1, severity: str = "permanent"
) -> dict[str, Any]:
    """A ``failed`` event's ``event-data``."""
    return {
        "event": "failed",
        "severity": severity,
        "reason": "bounce",
        "recipient": email,
        "timestamp": time.time(),
        "delivery-status": {
            "code": 550,
            "message": "5.1.1 The email account that you tried to reach does not exist",
            "description": "",
        },
        "user-variables": {"herald_notification": notification_id, "herald_cycle": str(cycle)},
    }


def postmark_auth(login: tuple[str, str] = DEV_POSTMARK_LOGIN) -> dict[str, str]:
    """The basic-auth header Postmark sends from credentials in the webhook URL."""
    token = base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def postmark_bounce(notification_id: str, email: str, cycle: int = 1) -> dict[str, Any]:
    """A ``Bounce`` webhook body (a hard bounce)."""
    return {
        "RecordType": "Bounce",
        "Type": "HardBounce",
        "TypeCode": 1,
        "MessageID": secrets.token_hex(16),
        "Description": "The server was unable to deliver your message (ex: unknown user).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist",
        "Email": email,
        "BouncedAt": "2026-01-01T00:00:00Z",
        "Metadata": {"herald_notification": notification_id, "herald_cycle": str(cycle)},
    }
