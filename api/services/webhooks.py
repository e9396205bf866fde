"""Webhook endpoints of a tenant: register (the secret shown once), list, remove, and
what was delivered to them. Delivery itself is ``herald webhooks`` (``webhooks/``)."""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from api.errors import not_found, unprocessable
from api.schemas.webhooks import WebhookCreated, WebhookDeliveryOut, WebhookIn, WebhookOut
from api.services.caps import within_cap
from herald.db import NotificationEvent, WebhookAttempt, WebhookEndpoint, WebhookMessage
from herald.settings import Settings
from herald.tenants import TenantContext
from herald.webhooks import UnsafeUrl, check_url, new_secret, webhook_id

log = logging.getLogger(__name__)

_LISTED = (
    WebhookEndpoint.id,
    WebhookEndpoint.url,
    WebhookEndpoint.events,
    WebhookEndpoint.created_at,
    WebhookEndpoint.disabled_at,
    WebhookEndpoint.disabled_reason,
)


async def create_webhook(
    engine: AsyncEngine, settings: Settings, tenant: TenantContext, body: WebhookIn
) -> WebhookCreated:
    """Register an endpoint after checking its URL is one Herald may call; 409 once the
    tenant has ``settings.max_webhooks`` endpoints."""
    try:
        await check_url(body.url, allow_private=settings.webhooks_allow_private)
    except UnsafeUrl as err:
        raise unprocessable("url", str(err)) from err
    secret = new_secret()
    async with engine.begin() as conn:
        await within_cap(
            conn,
            tenant.id,
            select(WebhookEndpoint.id).where(WebhookEndpoint.tenant_id == tenant.id),
            cap=settings.max_webhooks,
            what="webhook endpoints",
            setting="HERALD_MAX_WEBHOOKS",
        )
        row = (
            await conn.execute(
                insert(WebhookEndpoint)
                .values(tenant_id=tenant.id, url=body.url, events=body.events, secret=secret)
                .returning(*_LISTED)
            )
        ).one()
    log.info(
        "webhook endpoint registered",
        extra={"tenant": tenant.name, "endpoint": str(row.id), "events": body.events},
    )
    return WebhookCreated(**row._asdict(), secret=secret)


async def list_webhooks(engine: AsyncEngine, tenant: TenantContext) -> list[WebhookOut]:
    """The tenant's endpoints, oldest first (secrets are never shown again)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(*_LISTED)
            .where(WebhookEndpoint.tenant_id == tenant.id)
            .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        )
        return [WebhookOut(**row._asdict()) for row in rows]


async def get_webhook(
    engine: AsyncEngine, tenant: TenantContext, endpoint_id: uuid.UUID
) -> WebhookOut:
    """One of the tenant's endpoints; 404 for another tenant's or none."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(*_LISTED).where(
                    WebhookEndpoint.id == endpoint_id, WebhookEndpoint.tenant_id == tenant.id
                )
            )
        ).first()
    if row is None:
        raise not_found(f"webhook {endpoint_id}")
    return WebhookOut(**row._asdict())


async def delete_webhook(
    engine: AsyncEngine, tenant: TenantContext, endpoint_id: uuid.UUID
) -> None:
    """Remove an endpoint and what it was still owed."""
    async with engine.begin() as conn:
        gone = await conn.execute(
            delete(WebhookEndpoint).where(
                WebhookEndpoint.id == endpoint_id, WebhookEndpoint.tenant_id == tenant.id
            )
        )
    if gone.rowcount == 0:
        raise not_found(f"webhook {endpoint_id}")


async def list_deliveries(
    engine: AsyncEngine, tenant: TenantContext, endpoint_id: uuid.UUID, *, limit: int
) -> list[WebhookDeliveryOut]:
    """The endpoint's most recent delivery attempts, newest first."""
    await get_webhook(engine, tenant, endpoint_id)
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(
                WebhookAttempt.attempt,
                WebhookAttempt.status_code,
                WebhookAttempt.error,
                WebhookAttempt.at,
                WebhookAttempt.duration_ms,
                NotificationEvent.id.label("event_id"),
                NotificationEvent.notification_id,
                NotificationEvent.status,
            )
            .join(WebhookMessage, WebhookMessage.id == WebhookAttempt.message_id)
            .join(NotificationEvent, NotificationEvent.id == WebhookMessage.event_id)
            .where(WebhookAttempt.endpoint_id == endpoint_id)
            .order_by(WebhookAttempt.at.desc(), WebhookAttempt.id.desc())
            .limit(limit)
        )
        return [
            WebhookDeliveryOut(
                event_id=webhook_id(row.event_id),
                notification_id=row.notification_id,
                type=f"notification.{row.status}",
                attempt=row.attempt,
                status_code=row.status_code,
                error=row.error,
                at=row.at,
                duration_ms=row.duration_ms,
            )
            for row in rows
        ]
