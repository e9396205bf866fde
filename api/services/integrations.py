"""A tenant's integrations: its own provider accounts, their credentials sealed at rest
(``herald/secretbox.py``) and never shown again. Workers read them (``activities/
providers/integrations.py``) within ``HERALD_INTEGRATIONS_CACHE_SECONDS`` of a change."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from activities.providers import registry
from api.errors import not_found, unprocessable
from api.schemas.integrations import (
    CONFIGS,
    CheckOut,
    IntegrationIn,
    IntegrationOut,
    IntegrationPatch,
)
from api.services.caps import within_cap
from herald import receipts_email
from herald.contracts import Channel
from herald.db import Integration
from herald.secretbox import SecretBox, SecretsError
from herald.settings import Settings
from herald.tenants import TenantContext
from herald.webhooks import UnsafeUrl, check_url, resolve

log = logging.getLogger(__name__)

SET = "[set]"
_COLUMNS = (
    Integration.id,
    Integration.tenant_id,
    Integration.channel,
    Integration.provider,
    Integration.name,
    Integration.priority,
    Integration.enabled,
    Integration.rate_per_second,
    Integration.config_ciphertext,
    Integration.key_id,
    Integration.created_at,
    Integration.updated_at,
    Integration.last_error,
    Integration.last_error_at,
)


def _config_errors(err: ValidationError) -> RequestValidationError:
    # loc, message and type only: never the input, which may be a credential.
    return RequestValidationError(
        [
            {"loc": ("body", "config", *e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in err.errors()
        ]
    )


async def _checked_config(
    settings: Settings, channel: str, provider: str, config: Mapping[str, Any]
) -> dict[str, str]:
    """``config`` as ``provider`` takes it, or a 422 naming the field at fault."""
    model = CONFIGS.get((channel, provider))
    if model is None or provider not in registry.known(Channel(channel)):
        offered = ", ".join(registry.known(Channel(channel))) or "none"
        raise unprocessable(
            "provider",
            f"unknown provider {provider!r} for {channel}; available: {offered}",
        )
    try:
        parsed = model.model_validate(dict(config))
    except ValidationError as err:
        raise _config_errors(err) from None
    clean: dict[str, str] = parsed.model_dump(by_alias=True, exclude_none=True)
    allow_private = settings.webhooks_allow_private
    try:
        if "base_url" in clean:
            await check_url(clean["base_url"], allow_private=allow_private)
        if provider == "smtp":
            await resolve(clean["host"], int(clean["port"]), allow_private=allow_private)
    except UnsafeUrl as err:
        field = "base_url" if "base_url" in clean and provider != "smtp" else "host"
        raise unprocessable(f"config.{field}", str(err)) from err
    # What the provider itself requires beyond the fields (e.g. FCM's token).
    async with httpx.AsyncClient() as http:
        try:
            built = registry.build(Channel(channel), provider, clean, settings, http)
        except ValueError as err:
            raise unprocessable("config", str(err)) from err
        await built.close()
    return clean


def receipts_url(
    settings: Settings, row: Any, config: Mapping[str, str], with_login: bool = True
) -> str | None:
    """Where the provider of an email integration posts its delivery events
    (``api/routes/receipts_email.py``), under ``HERALD_PUBLIC_URL``; None for providers
    whose receipts need no per-integration URL. A Postmark integration without its own
    login gets the derived one as the URL's userinfo, as Postmark's settings take it,
    when ``with_login`` (the login lets its holder report receipts)."""
    if row.channel != Channel.email.value or row.provider not in receipts_email.PROVIDERS:
        return None
    url = f"{settings.public_url.rstrip('/')}/v1/providers/{row.provider}/events/{row.id}"
    if row.provider != "postmark" or config.get("webhook_username") or not with_login:
        return url
    user, password = receipts_email.postmark_webhook_login(settings, row.id)
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.netloc}"))


def _out(settings: Settings, box: SecretBox, row: Any, tenant: TenantContext) -> IntegrationOut:
    """The integration as the API shows it. A derived Postmark login is shown only to a
    live key that may manage integrations, not to every key that may read them."""
    try:
        config = box.open(row.tenant_id, row.id, row.key_id, row.config_ciphertext)
    except SecretsError:
        config = {}
    fields = {
        name: getattr(row, name)
        for name in IntegrationOut.model_fields
        if name not in ("config", "receipts_url") and hasattr(row, name)
    }
    return IntegrationOut(
        **fields,
        config=dict.fromkeys(sorted(config), SET),
        receipts_url=receipts_url(
            settings, row, config, with_login="manage" in tenant.scopes and not tenant.test
        ),
    )


async def _row(conn: AsyncConnection, tenant: TenantContext, integration_id: uuid.UUID) -> Any:
    row = (
        await conn.execute(
            select(*_COLUMNS).where(
                Integration.id == integration_id, Integration.tenant_id == tenant.id
            )
        )
    ).one_or_none()
    if row is None:
        raise not_found("integration")
    return row


async def create_integration(
    engine: AsyncEngine, settings: Settings, tenant: TenantContext, body: IntegrationIn
) -> IntegrationOut:
    """Store a new integration, its config sealed; 409 past ``HERALD_MAX_INTEGRATIONS``."""
    channel = body.channel.value
    config = await _checked_config(settings, channel, body.provider, body.config)
    box = SecretBox.from_settings(settings)
    integration_id = uuid.uuid4()
    kid, sealed = box.seal(tenant.id, integration_id, config)
    async with engine.begin() as conn:
        await within_cap(
            conn,
            tenant.id,
            select(Integration.id).where(Integration.tenant_id == tenant.id),
            cap=settings.max_integrations,
            what="integrations",
            setting="HERALD_MAX_INTEGRATIONS",
        )
        priority = body.priority
        if priority is None:  # after the channel's others
            priority = await conn.scalar(
                select(func.coalesce(func.max(Integration.priority) + 1, 0)).where(
                    Integration.tenant_id == tenant.id, Integration.channel == channel
                )
            )
        row = (
            await conn.execute(
                insert(Integration)
                .values(
                    id=integration_id,
                    tenant_id=tenant.id,
                    channel=channel,
                    provider=body.provider,
                    name=body.name or body.provider,
                    priority=priority,
                    enabled=body.enabled,
                    rate_per_second=body.rate_per_second,
                    config_ciphertext=sealed,
                    key_id=kid,
                )
                .returning(*_COLUMNS)
            )
        ).one()
    log.info(
        "integration added",
        extra={
            "tenant": tenant.name,
            "integration": str(integration_id),
            "provider": body.provider,
        },
    )
    return _out(settings, box, row, tenant)


async def list_integrations(
    engine: AsyncEngine, settings: Settings, tenant: TenantContext
) -> list[IntegrationOut]:
    """The tenant's integrations by channel, then in the order sends try them."""
    box = SecretBox.from_settings(settings)
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(*_COLUMNS)
            .where(Integration.tenant_id == tenant.id)
            .order_by(Integration.channel, Integration.priority, Integration.created_at)
        )
        return [_out(settings, box, row, tenant) for row in rows]


async def get_integration(
    engine: AsyncEngine, settings: Settings, tenant: TenantContext, integration_id: uuid.UUID
) -> IntegrationOut:
    """One of the tenant's integrations; 404 for another tenant's or none."""
    async with engine.connect() as conn:
        return _out(
            settings,
            SecretBox.from_settings(settings),
            await _row(conn, tenant, integration_id),
            tenant,
        )


async def update_integration(
    engine: AsyncEngine,
    settings: Settings,
    tenant: TenantContext,
    integration_id: uuid.UUID,
    body: IntegrationPatch,
) -> IntegrationOut:
    """Change what the body names; a config is merged into the stored one and checked
    whole, then sealed again (with the current key)."""
    box = SecretBox.from_settings(settings)
    async with engine.connect() as conn:
        current = await _row(conn, tenant, integration_id)
    values: dict[str, Any] = {"updated_at": func.now()}
    for name in ("name", "priority", "enabled"):
        if getattr(body, name) is not None:
            values[name] = getattr(body, name)
    if "rate_per_second" in body.model_fields_set:
        values["rate_per_second"] = body.rate_per_second
    if body.config is not None:
        try:
            stored = box.open(tenant.id, integration_id, current.key_id, current.config_ciphertext)
        except SecretsError:
            stored = {}  # unreadable (a retired key): the new config must be whole
        merged = {**stored, **body.config}
        merged = {key: value for key, value in merged.items() if value is not None}
        config = await _checked_config(settings, current.channel, current.provider, merged)
        values["key_id"], values["config_ciphertext"] = box.seal(tenant.id, integration_id, config)
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                update(Integration)
                .where(Integration.id == integration_id, Integration.tenant_id == tenant.id)
                .values(**values)
                .returning(*_COLUMNS)
            )
        ).one_or_none()
    if row is None:
        raise not_found("integration")
    log.info(
        "integration changed",
        extra={"integration": str(integration_id), "fields": sorted(body.model_fields_set)},
    )
    return _out(settings, box, row, tenant)


async def delete_integration(
    engine: AsyncEngine, tenant: TenantContext, integration_id: uuid.UUID
) -> None:
    """Remove an integration; sends stop using it within the workers' cache time."""
    async with engine.begin() as conn:
        gone = await conn.execute(
            delete(Integration)
            .where(Integration.id == integration_id, Integration.tenant_id == tenant.id)
            .returning(Integration.id)
        )
        if gone.one_or_none() is None:
            raise not_found("integration")
    log.info("integration removed", extra={"integration": str(integration_id)})


async def check_integration(
    engine: AsyncEngine, settings: Settings, tenant: TenantContext, integration_id: uuid.UUID
) -> CheckOut:
    """Ask the provider whether it accepts the credentials, sending nothing to anyone; a
    failure is noted on the integration like a send's."""
    async with engine.connect() as conn:
        row = await _row(conn, tenant, integration_id)
    try:
        config = SecretBox.from_settings(settings).open(
            tenant.id, integration_id, row.key_id, row.config_ciphertext
        )
    except SecretsError as err:
        return CheckOut(ok=False, detail=str(err))
    async with httpx.AsyncClient(timeout=settings.provider_timeout_seconds) as http:
        try:
            provider = registry.build(
                Channel(row.channel), row.provider, config, settings, http, row.name
            )
        except (KeyError, ValueError) as err:
            return CheckOut(ok=False, detail=f"cannot be built: {err}")
        try:
            ok, detail = await provider.check()
        finally:
            await provider.close()
    if not ok:
        async with engine.begin() as conn:
            await conn.execute(
                update(Integration)
                .where(Integration.id == integration_id)
                .values(last_error=f"check: {detail}"[:500], last_error_at=func.now())
            )
    return CheckOut(ok=ok, detail=detail)
