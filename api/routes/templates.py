"""``/v1/templates``: versioned message templates."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import EngineDep, ManageTenantDep, ReadTenantDep, SettingsDep
from api.errors import unprocessable
from api.schemas.templates import (
    PreviewIn,
    PreviewOut,
    TemplateIn,
    TemplateOut,
    TemplatePage,
    TemplateVersions,
)
from api.services import templates
from herald.contracts import Text
from herald.templating import RenderLimits

router = APIRouter(prefix="/v1/templates", tags=["templates"])


@router.post("", status_code=201)
async def create_template(
    body: TemplateIn, engine: EngineDep, settings: SettingsDep, tenant: ManageTenantDep
) -> TemplateOut:
    """Create version 1 of a template for a channel and locale."""
    return await templates.save_version(
        engine,
        tenant.id,
        body,
        first=True,
        max_templates=settings.max_templates,
        limits=RenderLimits.of(settings),
    )


@router.put("/{key}")
async def add_version(
    key: Annotated[Text, Path(max_length=128)],
    body: TemplateIn,
    engine: EngineDep,
    settings: SettingsDep,
    tenant: ManageTenantDep,
) -> TemplateOut:
    """Store a new version; older versions stay readable."""
    if body.key != key:
        raise unprocessable("key", f"body key {body.key!r} does not match the path {key!r}")
    return await templates.save_version(
        engine,
        tenant.id,
        body,
        first=False,
        max_templates=settings.max_templates,
        limits=RenderLimits.of(settings),
    )


@router.get("/{key}")
async def get_template(
    key: Annotated[Text, Path(max_length=128)],
    engine: EngineDep,
    tenant: ReadTenantDep,
    version: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
) -> TemplateVersions:
    """The latest version per channel and locale, or one version with ``?version=N``."""
    return await templates.get_versions(engine, tenant.id, key, version)


@router.get("")
async def list_templates(
    engine: EngineDep,
    tenant: ReadTenantDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[Text | None, Query(max_length=512)] = None,
) -> TemplatePage:
    """Every template key with its channels, locales and latest versions, by key."""
    return await templates.list_templates(engine, tenant.id, limit=limit, cursor=cursor)


@router.post("/{key}/preview")
async def preview_template(
    key: Annotated[Text, Path(max_length=128)],
    body: PreviewIn,
    engine: EngineDep,
    settings: SettingsDep,
    tenant: ReadTenantDep,
) -> PreviewOut:
    """Render the template (or a draft given in the body) with sample data; nothing is
    sent. A missing variable is a 422 naming it."""
    return await templates.preview(engine, tenant.id, key, body, RenderLimits.of(settings))
