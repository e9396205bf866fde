"""Vonage SMS delivery receipts (DLRs), verified by their signature, as Herald receipts.

Vonage signs webhooks with the account's signature secret
(https://developer.vonage.com/en/getting-started/concepts/signing-messages): the
parameters other than ``sig``, sorted by name, each as ``&name=value`` with ``&`` and
``=`` in values replaced by ``_``; then either the MD5 of that string followed by the
secret (``md5hash``) or its HMAC (MD5, SHA-1, SHA-256 or SHA-512) keyed with the secret,
in hex. The method is an account setting, so any of them is accepted; the signed
``timestamp`` must be within ``MAX_AGE_SECONDS``. A receipt's ``client-ref`` is the
idempotency key Herald sent (the notification id, ``-<cycle>`` after a resend);
``status`` delivered / failed / rejected / expired becomes ``delivered`` or
``undelivered`` (naming ``err-code``), others are only logged.

Whose secret: the deployment's (``HERALD_VONAGE_SIGNATURE_SECRET``) for its own account,
or the ``signature_secret`` of a ``vonage`` integration of the tenant whose notification
the receipt names (``api/routes/receipts_vonage.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

from herald.contracts import Receipt, Status
from herald.settings import Settings

VONAGE_RECEIPT_PATH = "/v1/providers/vonage/receipts"
MAX_AGE_SECONDS = 15 * 60
_HMACS = ("md5", "sha1", "sha256", "sha512")
_OUTCOMES = {
    "delivered": Status.delivered,
    "failed": Status.undelivered,
    "rejected": Status.undelivered,
    "expired": Status.undelivered,
}


class Forged(Exception):
    """Not Vonage's: a missing or wrong signature, or a stale timestamp."""


def vonage_callback_url(settings: Settings) -> str:
    """Where every Vonage send asks for its delivery receipt (``callback``)."""
    return settings.public_url.rstrip("/") + VONAGE_RECEIPT_PATH


def _signed_string(params: Mapping[str, str]) -> bytes:
    return "".join(
        f"&{key}={str(value).replace('&', '_').replace('=', '_')}"
        for key, value in sorted(params.items())
        if key != "sig"
    ).encode()


def signatures(params: Mapping[str, str], secret: str) -> dict[str, str]:
    """What ``sig`` is under each of Vonage's signature methods."""
    signed = _signed_string(params)
    found = {"md5hash": hashlib.md5(signed + secret.encode()).hexdigest()}
    for method in _HMACS:
        found[method] = hmac.new(secret.encode(), signed, method).hexdigest()
    return found


def sign(params: Mapping[str, str], secret: str, method: str = "sha256") -> str:
    """``sig`` for ``params`` (what Vonage, and the local fake, send)."""
    return signatures(params, secret)[method]


def verify(params: Mapping[str, str], secrets: list[str], now: float | None = None) -> None:
    """Raise ``Forged`` unless ``params`` carry a fresh signature by one of ``secrets``."""
    given = str(params.get("sig", "")).lower()
    if not given:
        raise Forged("the receipt is not signed (no sig)")
    if not secrets:
        raise Forged("no Vonage signature secret is configured here")
    if not any(
        hmac.compare_digest(given, candidate)
        for secret in secrets
        for candidate in signatures(params, secret).values()
    ):
        raise Forged("the signature does not match")
    try:
        stamp = float(params.get("timestamp", ""))
    except ValueError:
        raise Forged("the signed timestamp is missing or not a number") from None
    if abs((now or time.time()) - stamp) > MAX_AGE_SECONDS:
        raise Forged("the signed timestamp is too old")


def deployment_secrets(settings: Settings) -> list[str]:
    """The deployment's signature secret, or the local fake's outside production."""
    if settings.vonage_signature_secret is not None:
        return [settings.vonage_signature_secret.get_secret_value()]
    return [] if settings.env == "production" else [DEVELOPMENT_SIGNATURE_SECRET]


# What the local fake signs receipts with (devtools/fakes/messaging_apis.py).
DEVELOPMENT_SIGNATURE_SECRET = "dev-vonage-signature-secret"


def send_of(params: Mapping[str, str]) -> tuple[uuid.UUID, int] | None:
    """The notification and send cycle a DLR's ``client-ref`` names, if it names one."""
    ref = str(params.get("client-ref", ""))
    text, _, cycle = ref[:36], ref[36:37], ref[37:]
    try:
        notification_id = uuid.UUID(text)
    except ValueError:
        return None
    if len(ref) == 36:
        return notification_id, 1
    if ref[36] != "-" or not cycle.isdigit() or len(cycle) > 9:
        return None
    return notification_id, int(cycle)


def receipt_of(params: Mapping[str, str]) -> tuple[str, Receipt]:
    """The message id a DLR is about, and its receipt; ``ValueError`` when it names no
    message or status."""
    message_id, reported = str(params.get("messageId", "")), str(params.get("status", "")).lower()
    if not message_id or not reported:
        raise ValueError("messageId and status are required")
    status = _OUTCOMES.get(reported)
    code = str(params.get("err-code", "") or "")
    suffix = f" (error {code})" if code and code != "0" else ""
    return message_id, Receipt(
        status=status,
        source="vonage",
        report=reported,
        at=datetime.now(UTC),
        detail=f"vonage reports {reported}{suffix}",
        error=f"vonage {reported}{suffix}" if status is Status.undelivered else None,
    )
