"""``/v1/integrations``: a tenant's own provider accounts (API.md, "Providers and
integrations")."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from api.deps import BackendsDep, ManageTenantDep, ReadTenantDep
from api.schemas.integrations import CheckOut, IntegrationIn, IntegrationOut, IntegrationPatch
from api.services import integrations

router = APIRouter(prefix="/v1/integrations", tags=["integrations"])


@router.post("", status_code=201)
async def create_integration(
    body: IntegrationIn, backends: BackendsDep, tenant: ManageTenantDep
) -> IntegrationOut:
    """Add an integration; its credentials are sealed and never shown again."""
    return await integrations.create_integration(backends.engine, backends.settings, tenant, body)


@router.get("")
async def list_integrations(backends: BackendsDep, tenant: ReadTenantDep) -> list[IntegrationOut]:
    """The tenant's integrations, credentials redacted."""
    return await integrations.list_integrations(backends.engine, backends.settings, tenant)


@router.get("/{integration_id}")
async def get_integration(
    integration_id: uuid.UUID, backends: BackendsDep, tenant: ReadTenantDep
) -> IntegrationOut:
    """One integration, credentials redacted, with its last error."""
    return await integrations.get_integration(
        backends.engine, backends.settings, tenant, integration_id
    )


@router.patch("/{integration_id}")
async def update_integration(
    integration_id: uuid.UUID,
    body: IntegrationPatch,
    backends: BackendsDep,
    tenant: ManageTenantDep,
) -> IntegrationOut:
    """Change priority, enabled, name, rate or config (merged into the stored one)."""
    return await integrations.update_integration(
        backends.engine, backends.settings, tenant, integration_id, body
    )


@router.delete("/{integration_id}", status_code=204)
async def delete_integration(
    integration_id: uuid.UUID, backends: BackendsDep, tenant: ManageTenantDep
) -> Response:
    """Remove an integration."""
    await integrations.delete_integration(backends.engine, tenant, integration_id)
    return Response(status_code=204)


@router.post("/{integration_id}/check")
async def check_integration(
    integration_id: uuid.UUID, backends: BackendsDep, tenant: ManageTenantDep
) -> CheckOut:
    """Verify the credentials with the provider, sending nothing to anyone."""
    return await integrations.check_integration(
        backends.engine, backends.settings, tenant, integration_id
    )
