"""Delivery receipts: the client's own (``/v1/notifications/{id}/receipt``) and
Twilio's status callbacks (``/v1/providers/twilio/status``, no API key: signed)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response

from api.deps import BackendsDep, SendTenantDep
from api.schemas.notifications import NotificationOut, ReceiptIn
from api.services import receipts
from herald.receipts import TWILIO_STATUS_PATH

router = APIRouter(tags=["receipts"])


@router.post("/v1/notifications/{notification_id}/receipt", status_code=202)
async def report_receipt(
    notification_id: uuid.UUID, body: ReceiptIn, backends: BackendsDep, tenant: SendTenantDep
) -> NotificationOut:
    """Report that a notification reached the user (or did not), where the provider
    gives no receipt (push)."""
    return await receipts.report_receipt(backends, tenant, notification_id, body)


@router.post(TWILIO_STATUS_PATH, status_code=204, include_in_schema=False)
async def twilio_status(
    request: Request,
    backends: BackendsDep,
    signature: Annotated[str | None, Header(alias="X-Twilio-Signature")] = None,
) -> Response:
    """Twilio's status callback for an SMS Herald sent."""
    await receipts.twilio_status(backends, request.url.query, await request.body(), signature)
    return Response(status_code=204)
