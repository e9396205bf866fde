"""``/v1/webhooks``: endpoints that receive signed status events."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import BackendsDep, EngineDep, ManageTenantDep, ReadTenantDep
from api.schemas.webhooks import WebhookCreated, WebhookDeliveryOut, WebhookIn, WebhookOut
from api.services import webhooks

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


@router.post("", status_code=201)
async def create_webhook(
    body: WebhookIn, backends: BackendsDep, tenant: ManageTenantDep
) -> WebhookCreated:
    """Register an endpoint; the answer carries its signing secret, shown this once."""
    return await webhooks.create_webhook(backends.engine, backends.settings, tenant, body)


@router.get("")
async def list_webhooks(engine: EngineDep, tenant: ReadTenantDep) -> list[WebhookOut]:
    """The tenant's endpoints."""
    return await webhooks.list_webhooks(engine, tenant)


@router.get("/{endpoint_id}")
async def get_webhook(
    endpoint_id: uuid.UUID, engine: EngineDep, tenant: ReadTenantDep
) -> WebhookOut:
    """One endpoint: its URL, events, and whether (and why) it was disabled."""
    return await webhooks.get_webhook(engine, tenant, endpoint_id)


@router.delete("/{endpoint_id}", status_code=204)
async def delete_webhook(
    endpoint_id: uuid.UUID, engine: EngineDep, tenant: ManageTenantDep
) -> Response:
    """Remove an endpoint; nothing more is sent to it."""
    await webhooks.delete_webhook(engine, tenant, endpoint_id)
    return Response(status_code=204)


@router.get("/{endpoint_id}/deliveries")
async def list_deliveries(
    endpoint_id: uuid.UUID,
    engine: EngineDep,
    tenant: ReadTenantDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[WebhookDeliveryOut]:
    """Recent delivery attempts, newest first: event id, status code or error, time."""
    return await webhooks.list_deliveries(engine, tenant, endpoint_id, limit=limit)
