"""Recipient activity: who the user is on a channel, or why they cannot be reached."""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from herald import statuslog
from herald.contracts import Channel, Recipient, RecipientLookup
from herald.db import Device, User, single_statements

# Built once: the lookup runs them for every notification.
_USER = select(User.email, User.phone, User.locale, User.preferences).where(
    User.tenant_id == bindparam("tenant_id"), User.id == bindparam("user_id")
)
_NEWEST_DEVICE = (
    select(Device.token)
    .where(Device.tenant_id == bindparam("tenant_id"), Device.user_id == bindparam("user_id"))
    .order_by(Device.id.desc())
    .limit(1)
)


class RecipientActivities:
    """Built once per core worker around the process's engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @activity.defn(name="load_recipient")
    async def load_recipient(self, lookup: RecipientLookup) -> Recipient:
        """Find the address for the channel; unknown, opted out or unreachable → suppressed.

        With ``lookup.accepted``, first make sure the notification is logged as accepted
        (the workflow's first step: one local activity and one connection, not two).
        """
        async with single_statements(self._engine) as conn:
            if lookup.accepted is not None:
                await statuslog.write_accepted(conn, lookup.accepted)
            who = {"tenant_id": lookup.tenant_id, "user_id": lookup.user_id}
            user = (await conn.execute(_USER, who)).first()
            if user is None:
                return Recipient(suppressed_reason=f"unknown user {lookup.user_id!r}")
            if not (user.preferences or {}).get(lookup.channel.value, True):
                return Recipient(suppressed_reason=f"user opted out of {lookup.channel.value}")
            address: str | None
            if lookup.channel is Channel.email:
                address, missing = user.email, "user has no email address"
            elif lookup.channel is Channel.sms:
                address, missing = user.phone, "user has no phone number"
            else:
                address = (await conn.execute(_NEWEST_DEVICE, who)).scalar()
                missing = "user has no push device"
        if not address:
            return Recipient(suppressed_reason=missing)
        return Recipient(address=address, locale=user.locale)
