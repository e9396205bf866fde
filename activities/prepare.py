"""``prepare``: the recipient lookup and the render of one send, as one local activity
and one statement.

One statement reads everything the send needs (the user's addresses, preferences and
quiet hours, the template's versions in every locale, the newest push device, and what
this send cycle recorded already) and, for the first lookup of a cycle, makes sure the
notification's ``accepted`` row and event exist: a no-op when the API wrote them, which
is always unless it crashed between starting the workflow and writing.

The render happens here, in the recipient's locale, so a template that cannot be
rendered is an answer the workflow decides on (fall back or fail). The rendered body
stays in this process for the send step that follows in the same workflow task
(``TemplateActivities.keep_body``): only its version, locale, subject and headers go
into the workflow's history, so a large email costs Temporal no more than a short one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Integer,
    String,
    and_,
    bindparam,
    case,
    func,
    literal,
    select,
)
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.recipients import newest_device, recipient_of
from activities.templates import TemplateActivities, template_versions
from herald import statuslog
from herald.contracts import Channel, Prepared, PrepareRequest, Recipient, SendResult
from herald.db import Notification, Template, User, single_statements
from herald.statuslog.accepted import accepted_ctes, accepted_params
from herald.templating import pick_locale

# The parameters of the reads, named apart from the accepted write's (``accepted.py``).
_TENANT = bindparam("p_tenant", type_=Template.tenant_id.type)
_USER_ID = bindparam("p_user", type_=User.id.type)
_CHANNEL = bindparam("p_channel", type_=String)
_TEMPLATE = bindparam("p_template", type_=String)
_VERSION = bindparam("p_version", type_=Integer)
_NOTIFICATION = bindparam("p_notification", type_=Notification.id.type)


def _templates(*, pinned: bool) -> Any:
    """The newest (or the pinned) version of the template in each locale, as JSON."""
    versions = template_versions(_TENANT, _TEMPLATE, _CHANNEL, _VERSION if pinned else None)
    row = versions.subquery("v")
    return (
        select(
            func.json_agg(
                func.json_build_object(
                    "locale", row.c.locale,
                    "version", row.c.version,
                    "subject", row.c.subject,
                    "body", row.c.body,
                    "category", row.c.category,
                ),
                type_=JSON,
            )
        )
        .scalar_subquery()
        .label("templates")
    )  # fmt: skip


_NEWEST_DEVICE = newest_device(_TENANT, _USER_ID).scalar_subquery()


def _statement(*, pinned: bool, accepted: bool) -> Any:
    one = select(literal(1).label("one")).subquery("one")
    user = User.__table__
    row = Notification.__table__
    query = select(
        user.c.email,
        user.c.phone,
        user.c.chat,
        user.c.locale,
        user.c.preferences,
        user.c.quiet_hours,
        user.c.timezone,
        (user.c.id.is_not(None)).label("known"),
        _templates(pinned=pinned),
        case((_CHANNEL == Channel.push.value, _NEWEST_DEVICE)).label("device"),
        row.c.status.label("n_status"),
        row.c.cycle.label("n_cycle"),
        row.c.leg.label("n_leg"),
        row.c.provider.label("n_provider"),
        row.c.provider_message_id.label("n_message_id"),
        row.c.attempts.label("n_attempts"),
    ).select_from(
        one.outerjoin(user, and_(user.c.tenant_id == _TENANT, user.c.id == _USER_ID)).outerjoin(
            row, row.c.id == _NOTIFICATION
        )
    )
    if accepted:
        query = query.add_cte(*accepted_ctes())
    return query


# Built once: every notification runs one of them.
_STATEMENTS = {
    (pinned, accepted): _statement(pinned=pinned, accepted=accepted)
    for pinned in (False, True)
    for accepted in (False, True)
}
# Statuses of a send cycle whose provider accepted the message.
_SENT = ("sent", "delivered", "undelivered")


class PrepareActivities:
    """Built once per channel worker around the template step (whose process keeps the
    rendered bodies for the send step)."""

    def __init__(self, engine: AsyncEngine, templates: TemplateActivities) -> None:
        self._engine = engine
        self._templates = templates

    @activity.defn(name="prepare")
    async def prepare(self, request: PrepareRequest) -> Prepared:
        """Look the recipient up (logging ``accepted`` first if asked), then render."""
        lookup, render = request.lookup, request.render
        accepted = lookup.accepted
        params: dict[str, Any] = {
            "p_tenant": lookup.tenant_id,
            "p_user": lookup.user_id,
            "p_channel": lookup.channel.value,
            "p_template": render.template,
            "p_version": render.version,
            "p_notification": lookup.notification_id,
        }
        if accepted is not None:
            params |= accepted_params(accepted)
        statement = _STATEMENTS[render.version is not None, accepted is not None]
        async with single_statements(self._engine) as conn:
            found = (await conn.execute(statement, params)).one()
        checked_at = datetime.now(UTC)
        templates: list[dict[str, Any]] = found.templates or []
        newest = max(templates, key=lambda version: version["version"], default=None)
        category = newest["category"] if newest is not None else None
        recipient = recipient_of(found if found.known else None, lookup, category, found.device)
        recorded = _recorded(found, request.cycle)
        if recorded is not None:
            return Prepared(recipient=recipient, recorded=recorded, checked_at=checked_at)
        if recipient.suppressed_reason is not None or recipient.address is None:
            return Prepared(recipient=recipient, checked_at=checked_at)
        return await self._render(request, recipient, templates, checked_at)

    async def _render(
        self,
        request: PrepareRequest,
        recipient: Recipient,
        templates: list[dict[str, Any]],
        checked_at: datetime,
    ) -> Prepared:
        render = request.render
        if render.locale is None and recipient.locale is not None:
            render = render.model_copy(update={"locale": recipient.locale})
        by_locale = {version["locale"]: version for version in templates}
        locale = pick_locale(list(by_locale), render.locale)
        try:
            message = await self._templates.render_loaded(
                render, None if locale is None else by_locale[locale]
            )
        except ApplicationError as err:
            if not err.non_retryable:
                raise
            return Prepared(recipient=recipient, render_error=err.message, checked_at=checked_at)
        nid = request.lookup.notification_id
        if nid is None or request.cycle is None:
            return Prepared(recipient=recipient, message=message, checked_at=checked_at)
        # The body waits here for the send step; the history gets the rest.
        self._templates.keep_body(nid, request.cycle, message.body)
        return Prepared(
            recipient=recipient,
            message=message.model_copy(update={"body": ""}),
            body_kept=True,
            checked_at=checked_at,
        )


def _recorded(found: Any, cycle: int | None) -> SendResult | None:
    """The provider's acceptance of this cycle's first channel if it is recorded already:
    this step runs again after its worker died between the send and the workflow task's
    end, and the send step must not send a second copy."""
    if cycle is None or found.n_cycle != cycle or found.n_leg or found.n_status not in _SENT:
        return None
    return statuslog.acceptance(found.n_provider, found.n_message_id, found.n_attempts)
