"""Telling a notification's workflow about a delivery receipt.

A workflow asked to wait for one (``confirm_within_seconds``) is still open and reacts
(escalating to the next fallback channel when none comes, or an ``undelivered`` does);
any other has ended, and its receipt only goes into the log (``herald/statuslog.py``):
a closed workflow is never reopened for it.
"""

from __future__ import annotations

import logging
import uuid
from email.utils import parseaddr

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from herald.contracts import RECEIPT_SIGNAL, ReceiptSignal, workflow_id_for
from herald.settings import Settings

log = logging.getLogger(__name__)


async def tell_workflow(client: Client, notification_id: uuid.UUID, receipt: ReceiptSignal) -> bool:
    """Signal ``receipt`` to the notification's workflow if it is still open; best effort
    (the receipt is already logged): False when the workflow has ended or the signal
    could not be sent."""
    handle = client.get_workflow_handle(workflow_id_for(notification_id))
    try:
        await handle.signal(RECEIPT_SIGNAL, receipt)
    except RPCError as err:
        if err.status is not RPCStatusCode.NOT_FOUND:
            log.warning(
                "could not tell the workflow about a receipt",
                extra={"notification_id": str(notification_id), "error": str(err)},
            )
        return False
    except Exception as err:  # Temporal unreachable, a lazy client failing to connect
        log.warning(
            "could not tell the workflow about a receipt",
            extra={"notification_id": str(notification_id), "error": str(err)},
        )
        return False
    return True


# --- Where receipts come back to ----------------------------------------------------

TWILIO_STATUS_PATH = "/v1/providers/twilio/status"


def twilio_callback_url(settings: Settings) -> str:
    """The ``StatusCallback`` every SMS send passes, and the URL its signature covers."""
    return settings.public_url.rstrip("/") + TWILIO_STATUS_PATH


def _bounce_parts(settings: Settings) -> tuple[str, str]:
    local, _, domain = parseaddr(settings.bounce_address)[1].rpartition("@")
    return (local or "bounces").split("+", 1)[0], domain or "localhost"


def bounce_address(settings: Settings, notification_id: uuid.UUID) -> str:
    """The VERP envelope sender of one notification's email:
    ``bounces+<notification id>@<domain of HERALD_BOUNCE_ADDRESS>``; a bounce names it."""
    local, domain = _bounce_parts(settings)
    return f"{local}+{notification_id}@{domain}"


def bounced_notification(settings: Settings, address: str) -> uuid.UUID | None:
    """The notification a bounce address names, or None if it is not one of ours."""
    local, domain = _bounce_parts(settings)
    mailbox, _, at_domain = address.strip().strip("<>").rpartition("@")
    prefix = f"{local}+"
    if at_domain.lower() != domain.lower() or not mailbox.lower().startswith(prefix.lower()):
        return None
    try:
        return uuid.UUID(mailbox[len(prefix) :])
    except ValueError:
        return None
