"""Vonage SMS delivery receipts (``/v1/providers/vonage/receipts``; no API key: signed).

Vonage calls the ``callback`` each send names with the receipt's parameters, as a GET
query, a form POST or a JSON POST (an account setting). A request whose ``sig`` is not
the signature of the deployment's Vonage account, or of a ``vonage`` integration of the
tenant whose notification its ``client-ref`` names (``herald/receipts_vonage.py``), is
``403`` and changes nothing; a verified one is ``204``: logged on that notification's
send cycle and told to its workflow, as Twilio's status callbacks are.
"""

from __future__ import annotations

import json
import logging
import uuid
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from sqlalchemy import select

from api.backends import Backends
from api.deps import BackendsDep
from api.errors import ApiError
from herald import receipts_vonage as vonage
from herald import statuslog
from herald.contracts import Channel, ReceiptSignal
from herald.db import Integration
from herald.receipts import tell_workflow
from herald.secretbox import SecretBox, SecretsError
from herald.submission import find_notification

log = logging.getLogger(__name__)

router = APIRouter(tags=["receipts"], include_in_schema=False)


async def _params(request: Request) -> dict[str, str]:
    params = dict(request.query_params)
    if request.method != "POST":
        return params
    body = await request.body()
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    try:
        if kind == "application/json":
            payload = json.loads(body)
            if not isinstance(payload, dict):
                raise ValueError("not an object")
            params |= {str(k): "" if v is None else str(v) for k, v in payload.items()}
        else:
            params |= dict(parse_qsl(body.decode(), keep_blank_values=True))
    except (ValueError, UnicodeDecodeError) as err:
        raise ApiError(422, f"the body is not a Vonage receipt: {err}", field="body") from err
    return params


async def _tenant_secrets(backends: Backends, tenant_id: uuid.UUID) -> list[str]:
    """The signature secrets of the tenant's Vonage integrations (disabled ones too: what
    they sent still reports)."""
    query = select(Integration.id, Integration.key_id, Integration.config_ciphertext).where(
        Integration.tenant_id == tenant_id,
        Integration.channel == Channel.sms.value,
        Integration.provider == "vonage",
    )
    async with backends.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    box = SecretBox.from_settings(backends.settings)
    secrets = []
    for row in rows:
        try:
            config = box.open(tenant_id, row.id, row.key_id, row.config_ciphertext)
        except SecretsError as err:
            log.warning("an integration's config does not open", extra={"error": str(err)})
            continue
        if config.get("signature_secret"):
            secrets.append(config["signature_secret"])
    return secrets


@router.api_route(vonage.VONAGE_RECEIPT_PATH, methods=["GET", "POST"], status_code=204)
async def vonage_receipt(request: Request, backends: BackendsDep) -> Response:
    """A Vonage delivery receipt for an SMS Herald sent."""
    params = await _params(request)
    send = vonage.send_of(params)
    row = await find_notification(backends.engine, send[0]) if send is not None else None
    try:
        try:
            vonage.verify(params, vonage.deployment_secrets(backends.settings))
        except vonage.Forged:
            if row is None:
                raise
            vonage.verify(params, await _tenant_secrets(backends, row["tenant_id"]))
    except vonage.Forged as err:
        log.warning("vonage delivery receipt refused", extra={"error": str(err)})
        raise ApiError(403, f"vonage receipt not verified: {err}") from err
    try:
        message_id, receipt = vonage.receipt_of(params)
    except ValueError as err:
        raise ApiError(422, str(err), field="messageId") from err
    if send is None or row is None or send[1] > row["cycle"]:
        log.info("vonage receipt for no notification of ours dropped", extra={"id": message_id})
        return Response(status_code=204)
    notification_id, cycle = send
    await statuslog.record_receipt(backends.engine, notification_id, cycle, receipt)
    log.info(
        "vonage delivery receipt",
        extra={"notification_id": str(notification_id), "message_status": receipt.report},
    )
    if receipt.status is not None:
        await tell_workflow(
            backends.temporal,
            notification_id,
            ReceiptSignal(cycle=cycle, status=receipt.status, reason=receipt.error, at=receipt.at),
            engine=backends.engine,
        )
    return Response(status_code=204)
