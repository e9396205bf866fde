"""Telling a notification's workflow about a delivery receipt.

A workflow asked to wait for one (``confirm_within_seconds``) is still open and reacts
(escalating to the next fallback channel when none comes, or an ``undelivered`` does);
any other has ended, and its receipt only goes into the log (``herald/statuslog/``):
a closed workflow is never reopened for it.
"""

from __future__ import annotations

import logging
import uuid

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
