"""Template activity: pick the template version for a locale and render it safely.

Rendering uses jinja2's ``SandboxedEnvironment`` bounded in output size and CPU time
(``herald/templating.py``, ``HERALD_RENDER_MAX_BYTES``/``_MS``), ``StrictUndefined`` (a
missing variable is an error, never an empty string) and autoescaping for email HTML.
The render runs in a thread, so a slow template never holds the worker's event loop.
Every render error is permanent: the notification fails with the reason, at once.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from jinja2 import TemplateError, UndefinedError
from jinja2.exceptions import SecurityError
from sqlalchemy import RowMapping, Select, bindparam, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.digests import with_digest_items
from activities.recipients import notification_of_caller
from herald.contracts import TRANSACTIONAL, Channel, RenderedMessage, RenderRequest
from herald.db import Notification, Template, single_statements
from herald.settings import Settings
from herald.templating import (
    DEFAULT_LOCALE,
    RenderLimitExceeded,
    RenderLimits,
    pick_locale,
    render_source,
)
from herald.unsubscribe import Unsubscribe, links

__all__ = ["DEFAULT_LOCALE", "TemplateActivities", "pick_locale"]


def _versions(*, pinned: bool) -> Select[str, int, str | None, str, str]:
    """The newest (or the pinned) version of a template in each of its locales."""
    query = (
        select(
            Template.locale, Template.version, Template.subject, Template.body, Template.category
        )
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
_USER_OF = select(Notification.user_id).where(Notification.id == bindparam("notification_id"))


class TemplateActivities:
    """Built once per worker around the process's engine and settings (the unsubscribe
    links' secret and public URL, and the render limits)."""

    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self._engine = engine
        self._settings = settings
        self._limits = RenderLimits.of(settings)

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
        category = template["category"] or TRANSACTIONAL
        # A digest's notification renders its members' data, read from PostgreSQL now.
        request = await with_digest_items(self._engine, request, notification_of_caller())
        data, headers = await self._unsubscribe(request, category)
        try:
            body, subject = await asyncio.to_thread(
                self._render, template, data, email=request.channel is Channel.email
            )
        except RenderLimitExceeded as err:
            raise ApplicationError(
                f"{where}: refused unsafe template operation: {err}",
                type="TemplateLimitExceeded",
                non_retryable=True,
            ) from err
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
            headers=headers,
            category=category,
        )

    def _render(
        self, template: RowMapping, data: dict[str, Any], *, email: bool
    ) -> tuple[str, str | None]:
        """``(body, subject)`` within the limits (blocks its thread for up to the time
        limit per part)."""
        body = render_source(template["body"], data, autoescape=email, limits=self._limits)
        subject = (
            render_source(template["subject"], data, autoescape=False, limits=self._limits)
            if template["subject"]
            else None
        )
        return body, subject

    async def _unsubscribe(
        self, request: RenderRequest, category: str
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The data the template sees and the email headers: a message of any category
        but ``transactional`` gets ``unsubscribe_url`` and, by email, ``List-Unsubscribe``
        with ``List-Unsubscribe-Post`` (RFC 8058)."""
        if category == TRANSACTIONAL:
            return request.data, {}
        user_id = request.user_id or await self._user_of(notification_of_caller())
        if user_id is None:
            return request.data, {}
        url, headers = links(
            self._settings, Unsubscribe(request.tenant_id, user_id, category, request.channel)
        )
        # Herald's link wins over a ``unsubscribe_url`` in the request's data.
        return {**request.data, "unsubscribe_url": url}, headers

    async def _user_of(self, notification_id: uuid.UUID | None) -> str | None:
        if notification_id is None:
            return None
        async with single_statements(self._engine) as conn:
            user_id: str | None = (
                await conn.execute(_USER_OF, {"notification_id": notification_id})
            ).scalar()
        return user_id
