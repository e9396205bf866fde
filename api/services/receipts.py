"""Delivery receipts that reach the API: Twilio's status callbacks and the client's own
reports. The status logic is in ``herald/statuslog/``; this checks who is asking."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from twilio.request_validator import RequestValidator

from api.backends import Backends
from api.errors import ApiError
from api.schemas.notifications import NotificationOut, ReceiptIn
from api.services.notifications import get_notification
from herald import statuslog
from herald.contracts import Receipt, ReceiptSignal, Status
from herald.receipts import tell_workflow, twilio_callback_url
from herald.settings import Settings
from herald.tenants import TenantContext

log = logging.getLogger(__name__)

# Twilio's MessageStatus values that say whether the message reached the phone; every
# other one (queued, sending, sent, accepted, scheduled, ...) is logged only.
_TWILIO_OUTCOMES = {
    "delivered": Status.delivered,
    "undelivered": Status.undelivered,
    "failed": Status.undelivered,
}
_NEVER_SENT = frozenset({Status.failed, Status.cancelled, Status.suppressed})


def _twilio_tokens(settings: Settings) -> list[str]:
    tokens = [settings.sms_auth_token.get_secret_value()]
    if settings.sms_secondary_auth_token is not None:
        tokens.append(settings.sms_secondary_auth_token.get_secret_value())
    return tokens


async def twilio_status(backends: Backends, query: str, body: bytes, signature: str | None) -> None:
    """Apply one Twilio status callback; 403 (and nothing changes) unless its
    ``X-Twilio-Signature`` is Twilio's for our URL and these parameters."""
    settings = backends.settings
    url = twilio_callback_url(settings) + (f"?{query}" if query else "")
    params = dict(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))
    if not signature or not any(
        RequestValidator(token).validate(url, params, signature)
        for token in _twilio_tokens(settings)
    ):
        log.warning("twilio status callback with a bad signature refused")
        raise ApiError(403, "invalid X-Twilio-Signature")
    sid, reported = params.get("MessageSid", ""), params.get("MessageStatus", "").lower()
    if not sid or not reported:
        raise ApiError(422, "MessageSid and MessageStatus are required")
    status = _TWILIO_OUTCOMES.get(reported)
    code = params.get("ErrorCode") or None
    error = f"twilio {reported}: error {code}" if code else f"twilio {reported}"
    receipt = Receipt(
        status=status,
        source="twilio",
        report=reported,
        at=datetime.now(UTC),
        detail=f"twilio reports {reported}" + (f" (error {code})" if code else ""),
        error=error if status is Status.undelivered else None,
    )
    found = await statuslog.record_message_receipt(backends.engine, sid, receipt)
    log.info(
        "twilio status callback",
        extra={
            "notification_id": str(found[0]) if found else None,
            "message_status": reported,
            "error_code": code,
            "waiting_for_sent": found is None,
        },
    )
    if found is not None and status is not None:
        await tell_workflow(
            backends.temporal,
            found[0],
            ReceiptSignal(cycle=found[1], status=status, reason=receipt.error, at=receipt.at),
            engine=backends.engine,
        )


async def report_receipt(
    backends: Backends, tenant: TenantContext, notification_id: uuid.UUID, body: ReceiptIn
) -> NotificationOut:
    """The client says what became of a notification it was sent. Receipts may come
    before Herald has recorded ``sent`` (they wait for it); one for a notification that
    can never be sent in its current cycle is a 409."""
    current = await get_notification(backends.engine, tenant, notification_id)
    if current.status in _NEVER_SENT:
        raise ApiError(
            409, f"notification is {current.status.value}: it was not sent, so it has no receipt"
        )
    status = Status(body.status)
    reason = body.reason or ("reported undelivered" if status is Status.undelivered else None)
    receipt = Receipt(
        status=status,
        source="client",
        report=status.value,
        at=datetime.now(UTC),
        detail=f"client reports {status.value}" + (f": {body.reason}" if body.reason else ""),
        error=reason if status is Status.undelivered else None,
    )
    await statuslog.record_receipt(backends.engine, notification_id, current.cycle, receipt)
    await tell_workflow(
        backends.temporal,
        notification_id,
        ReceiptSignal(cycle=current.cycle, status=status, reason=reason, at=receipt.at),
        engine=backends.engine,
    )
    if current.status not in (Status.sent, Status.delivered, Status.undelivered):
        return current
    return await get_notification(backends.engine, tenant, notification_id)
