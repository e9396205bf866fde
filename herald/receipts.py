"""Telling a notification's workflow about a delivery receipt.

A workflow asked to wait for one (``confirm_within_seconds``) is still open and reacts
(escalating to the next fallback channel when none comes, or an ``undelivered`` does);
any other has ended, and its receipt only goes into the log (``herald/statuslog/``):
a closed workflow is never reopened for it. A notification that a flow's send step made
also wakes the flow run (``step_event``), so a ``wait`` for it is met at once.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from herald.contracts import RECEIPT_SIGNAL, ReceiptSignal, workflow_id_for
from herald.settings import Settings

log = logging.getLogger(__name__)


async def tell_workflow(
    client: Client,
    notification_id: uuid.UUID,
    receipt: ReceiptSignal,
    *,
    engine: AsyncEngine | None = None,
) -> bool:
    """Signal ``receipt`` to the notification's workflow if it is still open; best effort
    (the receipt is already logged): False when the workflow has ended or the signal
    could not be sent. With ``engine``, the flow run the notification belongs to (if
    any) is told too."""
    if engine is not None:
        await tell_flow_run(client, engine, notification_id, receipt.status.value)
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


async def tell_flow_run(
    client: Client, engine: AsyncEngine, notification_id: uuid.UUID, status: str
) -> bool:
    """Signal ``step_event`` to the flow run whose send step made the notification, if
    there is one and it is still running; best effort (the run's ``wait`` also reads the
    notification on a timer): False when there is no such run or it was not told."""
    # Imported here: most processes that record receipts never meet a flow.
    from herald.flows.models import STEP_EVENT_SIGNAL, StepEvent, run_workflow_id
    from herald.flows.store import run_of_notification

    try:
        run_id = await run_of_notification(engine, notification_id)
        if run_id is None:
            return False
        await client.get_workflow_handle(run_workflow_id(run_id)).signal(
            STEP_EVENT_SIGNAL, StepEvent(notification_id=notification_id, status=status)
        )
    except RPCError as err:
        if err.status is not RPCStatusCode.NOT_FOUND:
            log.warning(
                "could not tell a flow run about a receipt",
                extra={"notification_id": str(notification_id), "error": str(err)},
            )
        return False
    except Exception as err:  # PostgreSQL or Temporal unreachable: the poll still finds it
        log.warning(
            "could not tell a flow run about a receipt",
            extra={"notification_id": str(notification_id), "error": str(err)},
        )
        return False
    return True


# --- Where receipts come back to ----------------------------------------------------

TWILIO_STATUS_PATH = "/v1/providers/twilio/status"


def twilio_callback_url(settings: Settings) -> str:
    """The ``StatusCallback`` every SMS send passes, and the URL its signature covers."""
    return settings.public_url.rstrip("/") + TWILIO_STATUS_PATH
