"""Template activity: pick the template version for a locale and render it safely.

Rendering uses jinja2's ``SandboxedEnvironment`` with bounds on loops, repetition,
formatting and output size (``herald/templating.py``), ``StrictUndefined`` (a missing
variable is an error, never an empty string) and autoescaping for email HTML. Every
render error is permanent.
"""

from __future__ import annotations

from jinja2 import TemplateError, UndefinedError
from jinja2.exceptions import SecurityError
from sqlalchemy import RowMapping, Select, bindparam, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from herald.contracts import Channel, RenderedMessage, RenderRequest
from herald.db import Template, single_statements
from herald.templating import DEFAULT_LOCALE, pick_locale, render_source

__all__ = ["DEFAULT_LOCALE", "TemplateActivities", "pick_locale"]


def _versions(*, pinned: bool) -> Select[str, int, str | None, str]:
    """The newest (or the pinned) version of a template in each of its locales."""
    query = (
        select(Template.locale, Template.version, Template.subject, Template.body)
        .where(
            Template.tenant_id == bindparam("tenant_id"),
            Template.key == bindparam("key"),
            Template.channel == bindparam("channel"),
        )
        .ext(distinct_on(Template.locale))
        .order_by(Template.locale, Template.version.desc())
    )
    return query.where(Template.version == bindparam("version")) if pinned else query


# Built once: the render step runs them for every notification.
_LATEST, _PINNED = _versions(pinned=False), _versions(pinned=True)


class TemplateActivities:
    """Built once per core worker around the process's engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def _load(self, request: RenderRequest) -> RowMapping | None:
        """The latest (or the pinned) version in the best locale, in one query."""
        params = {
            "tenant_id": request.tenant_id,
            "key": request.template,
            "channel": request.channel.value,
        }
        query = _LATEST
        if request.version is not None:
            query, params["version"] = _PINNED, request.version
        async with single_statements(self._engine) as conn:
            rows = (await conn.execute(query, params)).mappings()
            candidates = {row["locale"]: row for row in rows}
        locale = pick_locale(list(candidates), request.locale)
        return None if locale is None else candidates[locale]

    @activity.defn(name="render_template")
    async def render_template(self, request: RenderRequest) -> RenderedMessage:
        """Render the template for this notification, or fail it for good."""
        template = await self._load(request)
        if template is None:
            raise ApplicationError(
                f"template {request.template!r} has no {request.channel.value} version",
                type="TemplateNotFound",
                non_retryable=True,
            )
        where = f"template {request.template!r} v{template['version']} ({template['locale']})"
        try:
            body = render_source(
                template["body"], request.data, autoescape=request.channel is Channel.email
            )
            subject = (
                render_source(template["subject"], request.data, autoescape=False)
                if template["subject"]
                else None
            )
        except UndefinedError as err:
            raise ApplicationError(
                f"{where}: missing variable: {err.message}",
                type="TemplateVariableMissing",
                non_retryable=True,
            ) from err
        except SecurityError as err:
            raise ApplicationError(
                f"{where}: refused unsafe template operation: {err}",
                type="TemplateUnsafe",
                non_retryable=True,
            ) from err
        except (TemplateError, ArithmeticError, TypeError, ValueError, RecursionError) as err:
            raise ApplicationError(
                f"{where}: {type(err).__name__}: {err}",
                type="TemplateRenderError",
                non_retryable=True,
            ) from err
        return RenderedMessage(
            template_version=template["version"],
            locale=template["locale"],
            subject=subject,
            body=body,
        )
