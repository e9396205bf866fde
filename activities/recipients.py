"""Recipient activity: who the user is on a channel, or why they cannot be reached."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from herald import chat, statuslog
from herald.contracts import (
    TRANSACTIONAL,
    Channel,
    QuietHours,
    Recipient,
    RecipientLookup,
    workflow_id_for,
)
from herald.db import Device, Notification, Template, User, single_statements

# The category of the template being sent: named by the lookup, or found through the
# notification, in the same statement as the user (no extra round trip).
_TEMPLATE_KEY = func.coalesce(
    bindparam("template", type_=Template.key.type),
    select(Notification.template)
    .where(Notification.id == bindparam("notification_id", type_=Notification.id.type))
    .scalar_subquery(),
)
_CATEGORY = (
    select(Template.category)
    .where(
        Template.tenant_id == bindparam("tenant_id"),
        Template.key == _TEMPLATE_KEY,
        Template.channel == bindparam("channel"),
    )
    .order_by(Template.version.desc())
    .limit(1)
    .scalar_subquery()
)
# Built once: the lookup runs them for every notification.
_USER = select(
    User.email,
    User.phone,
    User.chat,
    User.locale,
    User.preferences,
    User.quiet_hours,
    User.timezone,
    _CATEGORY.label("category"),
).where(User.tenant_id == bindparam("tenant_id"), User.id == bindparam("user_id"))


def newest_device(tenant: Any, user: Any) -> Select[str]:
    """The token of the user's newest push device (``tenant`` and ``user``: parameters)."""
    return (
        select(Device.token)
        .where(Device.tenant_id == tenant, Device.user_id == user)
        .order_by(Device.id.desc())
        .limit(1)
    )


_NEWEST_DEVICE = newest_device(bindparam("tenant_id"), bindparam("user_id"))


def notification_of_caller() -> uuid.UUID | None:
    """The notification whose workflow runs this activity, if a notification's does."""
    try:
        workflow_id = activity.info().workflow_id or ""
    except RuntimeError:  # called outside an activity
        return None
    prefix = workflow_id_for("")
    if not workflow_id.startswith(prefix):
        return None
    try:
        return uuid.UUID(workflow_id.removeprefix(prefix))
    except ValueError:
        return None


def opted_out(preferences: dict[str, Any], channel: Channel, category: str | None) -> str | None:
    """Why the user's preferences stop this message, naming the preference; None if not."""
    if not preferences.get(channel.value, True):
        return f"user opted out of {channel.value}"
    if category is None or category == TRANSACTIONAL:
        return None
    choices = (preferences.get("categories") or {}).get(category) or {}
    if choices.get(channel.value, True) is False:
        return (
            f"user opted out of {category} on {channel.value} "
            f"(preferences.categories.{category}.{channel.value})"
        )
    return None


class RecipientActivities:
    """Built once per core worker around the process's engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @activity.defn(name="load_recipient")
    async def load_recipient(self, lookup: RecipientLookup) -> Recipient:
        """Find the address for the channel; unknown, opted out (of the channel or of the
        template's category) or unreachable → suppressed.

        With ``lookup.accepted``, first make sure the notification is logged as accepted
        (the workflow's first step: one local activity and one connection, not two).
        The user's quiet hours and timezone come back with the address.
        """
        accepted = lookup.accepted
        template = lookup.template or (accepted.template if accepted else None)
        notification_id = lookup.notification_id or (
            accepted.notification_id if accepted else notification_of_caller()
        )
        async with single_statements(self._engine) as conn:
            if accepted is not None:
                await statuslog.write_accepted(conn, accepted)
            who = {"tenant_id": lookup.tenant_id, "user_id": lookup.user_id}
            user = (
                await conn.execute(
                    _USER,
                    who
                    | {
                        "template": template,
                        "notification_id": notification_id,
                        "channel": lookup.channel.value,
                    },
                )
            ).first()
            device = None
            if user is not None and lookup.channel is Channel.push:
                device = (await conn.execute(_NEWEST_DEVICE, who)).scalar()
        return recipient_of(user, lookup, user.category if user is not None else None, device)


def recipient_of(
    user: Any, lookup: RecipientLookup, category: str | None, device: str | None
) -> Recipient:
    """The recipient ``user`` (a row of the user's columns, None for an unknown user) is
    on ``lookup.channel`` for a template of ``category``, or why they cannot be reached;
    ``device`` is the user's newest push token."""
    if user is None:
        return Recipient(suppressed_reason=f"unknown user {lookup.user_id!r}")
    stopped = opted_out(user.preferences or {}, lookup.channel, category)
    if stopped is not None:
        return Recipient(suppressed_reason=stopped, category=category)
    address: str | None
    if lookup.channel is Channel.email:
        address, missing = user.email, "user has no email address"
    elif lookup.channel is Channel.sms:
        address, missing = user.phone, "user has no phone number"
    elif lookup.channel is Channel.chat:
        address = chat.encode(user.chat) if user.chat else None
        missing = "user has no chat address"
    elif lookup.channel is Channel.inapp:
        # The inbox is the user's own: no address to look up.
        address, missing = lookup.user_id, ""
    else:
        address, missing = device, "user has no push device"
    if not address:
        return Recipient(suppressed_reason=missing, category=category)
    return Recipient(
        address=address,
        locale=user.locale,
        quiet_hours=QuietHours.model_validate(user.quiet_hours) if user.quiet_hours else None,
        timezone=user.timezone,
        category=category,
    )
