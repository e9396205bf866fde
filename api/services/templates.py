"""Templates: immutable versions per key, channel and locale."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

from jinja2 import TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError
from sqlalchemy import RowMapping, func, insert, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api.errors import ApiError, not_found, unprocessable
from api.pagination import decode_cursor, encode_cursor
from api.schemas.templates import (
    PreviewIn,
    PreviewOut,
    TemplateIn,
    TemplateOut,
    TemplatePage,
    TemplateSummary,
    TemplateVersions,
    TemplateVersionSummary,
)
from api.services.caps import within_cap
from herald.contracts import Channel
from herald.db import Template
from herald.submission import latest_versions_cache
from herald.templating import (
    DEFAULT_LOCALE,
    RenderLimits,
    pick_locale,
    plain_text,
    render_source,
)

_TEMPLATES = Template.__table__


def _check(template: TemplateIn, limits: RenderLimits) -> None:
    """Refuse a template that cannot be sent: a render without data finds syntax errors,
    unsafe operations and bombs (over a render limit) that do not depend on the data.
    Blocks its thread for up to the render time limit per part."""
    if template.channel is Channel.email and not template.subject:
        raise unprocessable("subject", "an email template needs a subject")
    if template.subject and ("\r" in template.subject or "\n" in template.subject):
        raise unprocessable("subject", "the subject is an email header: no line breaks")
    for field, source in (("subject", template.subject), ("body", template.body)):
        if not source:
            continue
        try:
            render_source(source, {}, autoescape=False, limits=limits)
        except TemplateSyntaxError as err:
            raise unprocessable(
                field, f"template syntax error on line {err.lineno}: {err.message}"
            ) from err
        except SecurityError as err:  # unsafe, or beyond the sandbox's bounds
            raise unprocessable(field, f"template refused: {err}") from err
        except Exception:  # missing variables and the like: known only with the data
            pass


def _out(row: RowMapping) -> TemplateOut:
    return TemplateOut.model_validate(dict(row))


async def save_version(
    engine: AsyncEngine,
    tenant_id: uuid.UUID,
    template: TemplateIn,
    *,
    first: bool,
    max_templates: int | None = None,
    limits: RenderLimits | None = None,
) -> TemplateOut:
    """Store version 1 (``first``) or the next version of a template. A new template key
    is a 409 once the tenant has ``max_templates`` keys; one that breaks a render limit
    (``limits``) without data is a 422."""
    # Off the event loop: the check renders, for up to the render time limit.
    await asyncio.to_thread(_check, template, limits or RenderLimits())
    scope = (
        Template.tenant_id == tenant_id,
        Template.key == template.key,
        Template.channel == template.channel.value,
        Template.locale == template.locale,
    )
    try:
        async with engine.begin() as conn:
            latest = (await conn.execute(select(func.max(Template.version)).where(*scope))).scalar()
            if first and latest is not None:
                raise ApiError(
                    409,
                    f"template {template.key!r} ({template.channel.value}, {template.locale}) "
                    f"exists; PUT /v1/templates/{template.key} adds a version",
                )
            if latest is None and max_templates is not None:
                await _within_template_cap(conn, tenant_id, template.key, max_templates)
            row = (
                (
                    await conn.execute(
                        insert(Template)
                        .values(
                            tenant_id=tenant_id,
                            version=(latest or 0) + 1,
                            **template.model_dump(mode="json"),
                        )
                        .returning(*_TEMPLATES.c)
                    )
                )
                .mappings()
                .one()
            )
    except IntegrityError as err:  # two writers raced for the same version number
        raise ApiError(409, "a concurrent change made the same version; retry") from err
    # This process's submissions see the new version at once (other processes hear it
    # from the templates trigger a moment later).
    latest_versions_cache().forget(f"{tenant_id}:{template.channel.value}:{template.key}")
    return _out(row)


async def _within_template_cap(
    conn: AsyncConnection, tenant_id: uuid.UUID, key: str, cap: int
) -> None:
    """The cap counts template keys: a new channel or locale of a key is not one more."""
    mine = Template.tenant_id == tenant_id
    this_key = select(Template.key).where(mine, Template.key == key).limit(1)
    if (await conn.execute(this_key)).first():
        return
    keys = select(Template.key).where(mine).distinct()
    await within_cap(
        conn, tenant_id, keys, cap=cap, what="template keys", setting="HERALD_MAX_TEMPLATES"
    )


async def get_versions(
    engine: AsyncEngine, tenant_id: uuid.UUID, key: str, version: int | None
) -> TemplateVersions:
    """Latest version per channel and locale, or every locale's version ``version``."""
    query = select(_TEMPLATES).where(Template.tenant_id == tenant_id, Template.key == key)
    if version is not None:
        query = query.where(Template.version == version)
    else:
        query = query.ext(distinct_on(Template.channel, Template.locale)).order_by(
            Template.channel, Template.locale, Template.version.desc()
        )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    if not rows:
        raise not_found(f"template {key!r}" + (f" version {version}" if version else ""))
    return TemplateVersions(key=key, versions=[_out(row) for row in rows])


async def list_templates(
    engine: AsyncEngine, tenant_id: uuid.UUID, *, limit: int, cursor: str | None
) -> TemplatePage:
    """Template keys in order, each with the latest version per channel and locale."""
    keys_query = select(Template.key).where(Template.tenant_id == tenant_id).distinct()
    if cursor is not None:
        (after,) = decode_cursor(cursor, str)
        keys_query = keys_query.where(Template.key > after)
    keys_query = keys_query.order_by(Template.key).limit(limit + 1)
    async with engine.connect() as conn:
        keys = list((await conn.execute(keys_query)).scalars())
        more = len(keys) > limit
        keys = keys[:limit]
        latest = (
            (
                await conn.execute(
                    select(
                        Template.key,
                        Template.channel,
                        Template.locale,
                        Template.version,
                        Template.created_at,
                    )
                    .where(Template.tenant_id == tenant_id, Template.key.in_(keys))
                    .ext(distinct_on(Template.key, Template.channel, Template.locale))
                    .order_by(
                        Template.key, Template.channel, Template.locale, Template.version.desc()
                    )
                )
            )
            .mappings()
            .all()
            if keys
            else []
        )
    by_key: dict[str, list[TemplateVersionSummary]] = {key: [] for key in keys}
    for row in latest:
        by_key[row["key"]].append(TemplateVersionSummary.model_validate(dict(row)))
    items = [
        TemplateSummary(
            key=key,
            channels=sorted({version.channel for version in versions}),
            locales=sorted({version.locale for version in versions}),
            latest=versions,
            updated_at=max(version.created_at for version in versions),
        )
        for key, versions in by_key.items()
        if versions
    ]
    return TemplatePage(items=items, next_cursor=encode_cursor(keys[-1]) if more else None)


_UNDEFINED = re.compile(r"^'([^']+)' is undefined$")
_NO_ATTRIBUTE = re.compile(r"has no attribute '([^']+)'")


def missing_variable(err: UndefinedError) -> str:
    """The name of the variable a render found missing, as a person would say it."""
    message = err.message or ""
    found = _UNDEFINED.search(message) or _NO_ATTRIBUTE.search(message)
    return found.group(1) if found else message


async def _stored_source(
    engine: AsyncEngine, tenant_id: uuid.UUID, key: str, preview: PreviewIn
) -> tuple[str, int, str | None, str]:
    """``(locale, version, subject, body)`` of the version a send would use."""
    query = (
        select(Template.locale, Template.version, Template.subject, Template.body)
        .where(
            Template.tenant_id == tenant_id,
            Template.key == key,
            Template.channel == preview.channel.value,
        )
        .ext(distinct_on(Template.locale))
        .order_by(Template.locale, Template.version.desc())
    )
    if preview.version is not None:
        query = query.where(Template.version == preview.version)
    async with engine.connect() as conn:
        rows = {row.locale: row for row in await conn.execute(query)}
    locale = pick_locale(list(rows), preview.locale)
    if locale is None:
        version = f" version {preview.version}" if preview.version else ""
        raise not_found(f"{preview.channel.value} template {key!r}{version}")
    row = rows[locale]
    return row.locale, row.version, row.subject, row.body


def _render(
    source: str, data: dict[str, Any], field: str, *, autoescape: bool, limits: RenderLimits
) -> str:
    try:
        return render_source(source, data, autoescape=autoescape, limits=limits)
    except UndefinedError as err:
        raise unprocessable(
            "data", f"missing variable {missing_variable(err)!r} (used in the {field})"
        ) from err
    except TemplateSyntaxError as err:
        raise unprocessable(
            field, f"template syntax error on line {err.lineno}: {err.message}"
        ) from err
    except SecurityError as err:
        raise unprocessable(field, f"template refused: {err}") from err
    except (TemplateError, ArithmeticError, TypeError, ValueError, RecursionError) as err:
        raise unprocessable(field, f"{type(err).__name__}: {err}") from err


async def preview(
    engine: AsyncEngine,
    tenant_id: uuid.UUID,
    key: str,
    request: PreviewIn,
    limits: RenderLimits | None = None,
) -> PreviewOut:
    """Render a stored version (or the draft in the request) with its sample data, exactly
    as a send would, within ``limits``; a missing variable or a broken limit is a 422
    naming it. Nothing is sent."""
    if request.body is not None:
        locale, version = request.locale or DEFAULT_LOCALE, None
        subject_source, body_source = request.subject, request.body
    else:
        locale, version, subject_source, body_source = await _stored_source(
            engine, tenant_id, key, request
        )
    email, limits = request.channel is Channel.email, limits or RenderLimits()
    # Rendered in a thread: a template may take up to the time limit, and the event loop
    # keeps serving other requests meanwhile.
    subject = (
        await asyncio.to_thread(
            _render, subject_source, request.data, "subject", autoescape=False, limits=limits
        )
        if subject_source
        else None
    )
    body = await asyncio.to_thread(
        _render, body_source, request.data, "body", autoescape=email, limits=limits
    )
    return PreviewOut(
        channel=request.channel,
        locale=locale,
        version=version,
        subject=subject,
        body=plain_text(body) if email else body,
        html=body if email else None,
    )
