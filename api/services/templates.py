"""Templates: immutable versions per key, channel and locale."""

from __future__ import annotations

import uuid

from jinja2 import TemplateSyntaxError
from jinja2.exceptions import SecurityError
from sqlalchemy import RowMapping, func, insert, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from api.errors import ApiError, not_found, unprocessable
from api.schemas import TemplateIn, TemplateOut, TemplateVersions
from herald.contracts import Channel
from herald.db import Template
from herald.templating import render_source

_TEMPLATES = Template.__table__


def _check(template: TemplateIn) -> None:
    if template.channel is Channel.email and not template.subject:
        raise unprocessable("subject", "an email template needs a subject")
    if template.subject and ("\r" in template.subject or "\n" in template.subject):
        raise unprocessable("subject", "the subject is an email header: no line breaks")
    for field, source in (("subject", template.subject), ("body", template.body)):
        if not source:
            continue
        try:
            render_source(source, {}, autoescape=False)
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
    engine: AsyncEngine, tenant_id: uuid.UUID, template: TemplateIn, *, first: bool
) -> TemplateOut:
    """Store version 1 (``first``) or the next version of a template."""
    _check(template)
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
    return _out(row)


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
