"""The email APIs' delivery events (no API key: signed, see ``herald/receipts_email.py``).

``/v1/providers/<provider>/events`` takes the events of the deployment's own account;
``/v1/providers/<provider>/events/<integration id>`` those of a tenant's integration,
verified with its secrets and applied to that tenant's notifications only. A forged or
unverifiable request is ``403`` and changes nothing; a verified one is ``204``.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from api.backends import Backends
from api.deps import BackendsDep
from api.errors import ApiError
from herald import receipts_email as email
from herald import statuslog
from herald.contracts import Channel, ReceiptSignal
from herald.db import Integration
from herald.receipts import tell_workflow
from herald.secretbox import SecretBox, SecretsError
from herald.settings import Settings
from herald.submission import find_notifications

log = logging.getLogger(__name__)

router = APIRouter(tags=["receipts"], include_in_schema=False)


async def integration_webhook_config(
    engine: AsyncEngine, settings: Settings, integration_id: uuid.UUID, provider: str
) -> tuple[uuid.UUID, dict[str, str]] | None:
    """The tenant and opened ``config`` of the tenant's email integration of ``provider``
    (``/v1/integrations``; disabled ones too: their messages already sent still report),
    or None if there is none or its config does not open."""
    query = select(Integration.tenant_id, Integration.key_id, Integration.config_ciphertext).where(
        Integration.id == integration_id,
        Integration.channel == Channel.email.value,
        Integration.provider == provider,
    )
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    if row is None:
        return None
    try:
        config = SecretBox.from_settings(settings).open(
            row.tenant_id, integration_id, row.key_id, row.config_ciphertext
        )
    except SecretsError as err:
        log.warning(
            "an integration's config does not open",
            extra={"integration_id": str(integration_id), "error": str(err)},
        )
        return None
    return row.tenant_id, config


async def _secrets(
    backends: Backends, provider: str, integration_id: uuid.UUID | None
) -> tuple[email.WebhookSecrets, uuid.UUID | None]:
    if integration_id is None:
        return email.deployment_secrets(backends.settings), None
    found = await integration_webhook_config(
        backends.engine, backends.settings, integration_id, provider
    )
    if found is None:
        raise ApiError(403, f"no {provider} integration {integration_id} to verify this with")
    tenant_id, config = found
    return email.integration_secrets(backends.settings, integration_id, config), tenant_id


def _refused(provider: str, err: Exception) -> ApiError:
    log.warning(f"{provider} event webhook refused", extra={"error": str(err)})
    return ApiError(403, f"{provider} event webhook not verified: {err}")


async def _apply(
    backends: Backends, provider: str, events: list[email.EmailEvent], tenant_id: uuid.UUID | None
) -> None:
    """Log each event's receipt on the notification it names (one of ``tenant_id``'s when
    it comes through an integration) and tell its workflow."""
    rows = await find_notifications(
        backends.engine, tenant_id, list({event.notification_id for event in events})
    )
    for event in events:
        row = rows.get(event.notification_id)
        if row is None:
            log.info(
                f"{provider} event for an unknown notification dropped",
                extra={"notification_id": str(event.notification_id)},
            )
            continue
        if event.cycle > row["cycle"]:
            continue
        receipt = event.receipt
        await statuslog.record_receipt(backends.engine, event.notification_id, event.cycle, receipt)
        log.info(
            f"{provider} event recorded",
            extra={"notification_id": str(event.notification_id), "report": receipt.report},
        )
        if receipt.status is not None:
            await tell_workflow(
                backends.temporal,
                event.notification_id,
                ReceiptSignal(
                    cycle=event.cycle, status=receipt.status, reason=receipt.error, at=receipt.at
                ),
                engine=backends.engine,
            )


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise ApiError(422, f"the body is not JSON: {err}", field="body") from err


async def _sendgrid(
    backends: Backends,
    request: Request,
    signature: str | None,
    timestamp: str | None,
    integration_id: uuid.UUID | None,
) -> Response:
    secrets, tenant_id = await _secrets(backends, "sendgrid", integration_id)
    body = await request.body()
    try:
        email.verify_sendgrid(secrets, body, signature, timestamp)
    except (email.Forged, email.NotConfigured) as err:
        raise _refused("sendgrid", err) from err
    _json(body)
    try:
        events = email.sendgrid_events(body)
    except ValueError as err:
        raise ApiError(422, str(err), field="body") from err
    await _apply(backends, "sendgrid", events, tenant_id)
    return Response(status_code=204)


SignatureHeader = Annotated[str | None, Header(alias="X-Twilio-Email-Event-Webhook-Signature")]
TimestampHeader = Annotated[str | None, Header(alias="X-Twilio-Email-Event-Webhook-Timestamp")]


@router.post("/v1/providers/sendgrid/events", status_code=204)
async def sendgrid_events(
    request: Request,
    backends: BackendsDep,
    signature: SignatureHeader = None,
    timestamp: TimestampHeader = None,
) -> Response:
    """SendGrid's Event Webhook for the deployment's account."""
    return await _sendgrid(backends, request, signature, timestamp, None)


@router.post("/v1/providers/sendgrid/events/{integration_id}", status_code=204)
async def sendgrid_integration_events(
    integration_id: uuid.UUID,
    request: Request,
    backends: BackendsDep,
    signature: SignatureHeader = None,
    timestamp: TimestampHeader = None,
) -> Response:
    """SendGrid's Event Webhook for a tenant's integration."""
    return await _sendgrid(backends, request, signature, timestamp, integration_id)


async def _mailgun(
    backends: Backends, request: Request, integration_id: uuid.UUID | None
) -> Response:
    secrets, tenant_id = await _secrets(backends, "mailgun", integration_id)
    payload = _json(await request.body())
    if not isinstance(payload, dict):
        raise _refused("mailgun", email.Forged("missing signature"))
    try:
        email.verify_mailgun(secrets, payload)
    except (email.Forged, email.NotConfigured) as err:
        raise _refused("mailgun", err) from err
    try:
        events = email.mailgun_events(payload)
    except ValueError as err:
        raise ApiError(422, str(err), field="event-data") from err
    await _apply(backends, "mailgun", events, tenant_id)
    return Response(status_code=204)


@router.post("/v1/providers/mailgun/events", status_code=204)
async def mailgun_events(request: Request, backends: BackendsDep) -> Response:
    """Mailgun's webhooks for the deployment's account."""
    return await _mailgun(backends, request, None)


@router.post("/v1/providers/mailgun/events/{integration_id}", status_code=204)
async def mailgun_integration_events(
    integration_id: uuid.UUID, request: Request, backends: BackendsDep
) -> Response:
    """Mailgun's webhooks for a tenant's integration."""
    return await _mailgun(backends, request, integration_id)


async def _postmark(
    backends: Backends,
    request: Request,
    authorization: str | None,
    integration_id: uuid.UUID | None,
) -> Response:
    secrets, tenant_id = await _secrets(backends, "postmark", integration_id)
    try:
        email.verify_postmark(secrets, authorization)
    except (email.Forged, email.NotConfigured) as err:
        raise _refused("postmark", err) from err
    payload = _json(await request.body())
    if not isinstance(payload, dict):
        raise ApiError(422, "the body is not a JSON object", field="body")
    await _apply(backends, "postmark", email.postmark_events(payload), tenant_id)
    return Response(status_code=204)


AuthorizationHeader = Annotated[str | None, Header(alias="Authorization")]


@router.post("/v1/providers/postmark/events", status_code=204)
async def postmark_events(
    request: Request, backends: BackendsDep, authorization: AuthorizationHeader = None
) -> Response:
    """Postmark's Delivery and Bounce webhooks for the deployment's server."""
    return await _postmark(backends, request, authorization, None)


@router.post("/v1/providers/postmark/events/{integration_id}", status_code=204)
async def postmark_integration_events(
    integration_id: uuid.UUID,
    request: Request,
    backends: BackendsDep,
    authorization: AuthorizationHeader = None,
) -> Response:
    """Postmark's webhooks for a tenant's integration (the per-tenant URL)."""
    return await _postmark(backends, request, authorization, integration_id)
