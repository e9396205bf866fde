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
from collections.abc import Mapping
from typing import Any

from cachetools import TTLCache
from jinja2 import TemplateError, UndefinedError
from jinja2.exceptions import SecurityError
from sqlalchemy import Select, bindparam, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.digests import with_digest_items
from activities.recipients import notification_of_caller
from herald.contracts import TRANSACTIONAL, Channel, RenderedMessage, RenderRequest, SendRequest
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


def template_versions(
    tenant: Any = None, key: Any = None, channel: Any = None, version: Any = None
) -> Select[str, int, str | None, str, str]:
    """The newest version of a template in each of its locales, or the one ``version``
    names: the render step's query and ``prepare``'s (which names its own parameters;
    by default they are ``tenant_id``, ``key`` and ``channel``)."""
    query = (
        select(
            Template.locale, Template.version, Template.subject, Template.body, Template.category
        )
        .where(
            Template.tenant_id == (bindparam("tenant_id") if tenant is None else tenant),
            Template.key == (bindparam("key") if key is None else key),
            Template.channel == (bindparam("channel") if channel is None else channel),
        )
        .ext(distinct_on(Template.locale))
        .order_by(Template.locale, Template.version.desc())
    )
    return query if version is None else query.where(Template.version == version)


# Built once: the render step runs them for every notification.
_LATEST, _PINNED = template_versions(), template_versions(version=bindparam("version"))
_USER_OF = select(Notification.user_id).where(Notification.id == bindparam("notification_id"))


# Bodies ``prepare`` rendered, waiting for the send step of the same workflow task (a
# few milliseconds, unless quiet hours hold the send): bounded in number and in time, a
# body not taken is rendered again by its send step.
KEPT_BODIES_MAX = 2048
KEPT_BODIES_SECONDS = 600.0


class TemplateActivities:
    """Built once per worker around the process's engine and settings (the unsubscribe
    links' secret and public URL, and the render limits)."""

    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self._engine = engine
        self._settings = settings
        self._limits = RenderLimits.of(settings)
        self._bodies: TTLCache[tuple[uuid.UUID, int], str] = TTLCache(
            KEPT_BODIES_MAX, KEPT_BODIES_SECONDS
        )

    def keep_body(self, notification_id: uuid.UUID, cycle: int, body: str) -> None:
        """Keep a body rendered for the first channel's send step of this cycle."""
        self._bodies[notification_id, cycle] = body

    async def with_body(self, request: SendRequest) -> SendRequest:
        """``request`` with its message's body: the one kept for it by ``prepare`` in this
        process, or the same version and locale rendered again (a retry, another worker,
        a body kept for too long)."""
        if request.render is None or request.message.body:
            return request
        body = self._bodies.pop((request.notification_id, request.cycle), None)
        if body is None:
            again = request.render.model_copy(
                update={
                    "data": request.data,
                    "version": request.message.template_version,
                    "locale": request.message.locale,
                }
            )
            body = (await self.render_template(again)).body
        return request.model_copy(
            update={"message": request.message.model_copy(update={"body": body})}
        )

    async def _load(self, request: RenderRequest) -> dict[str, Any] | None:
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
        return None if locale is None else dict(candidates[locale])

    @activity.defn(name="render_template")
    async def render_template(self, request: RenderRequest) -> RenderedMessage:
        """Render the template for this notification, or fail it for good."""
        return await self.render_loaded(request, await self._load(request))

    async def render_loaded(
        self, request: RenderRequest, template: Mapping[str, Any] | None
    ) -> RenderedMessage:
        """Render ``template`` (the version ``_load`` would pick: ``locale``, ``version``,
        ``subject``, ``body``, ``category``; None if there is none) for ``request``."""
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
        self, template: Mapping[str, Any], data: dict[str, Any], *, email: bool
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
