"""One-click unsubscribe: read a signed token and opt its user out of its category on
its channel (RFC 8058). Doing it twice changes nothing more."""

from __future__ import annotations

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine

from api.errors import not_found
from herald.settings import Settings
from herald.unsubscribe import Unsubscribe, read_token

# preferences.categories.<category>.<channel> = false, creating what is missing, in one
# statement (a concurrent preference change is never lost to a read-modify-write).
_OPT_OUT = text(
    """
    UPDATE users SET
        preferences = jsonb_set(
            COALESCE(preferences, '{}'::jsonb),
            '{categories}',
            COALESCE(preferences->'categories', '{}'::jsonb) || jsonb_build_object(
                CAST(:category AS text),
                COALESCE(preferences->'categories'->CAST(:category AS text), '{}'::jsonb)
                    || :choice
            )
        ),
        updated_at = now()
    WHERE tenant_id = :tenant_id AND id = :user_id
    RETURNING id
    """
).bindparams(bindparam("choice", type_=JSONB))


def claim_of(settings: Settings, token: str) -> Unsubscribe:
    """What the token opts out of; a tampered or foreign token is a 404."""
    unsubscribe = read_token(settings, token)
    if unsubscribe is None:
        raise not_found("unsubscribe link")
    return unsubscribe


async def opt_out(engine: AsyncEngine, settings: Settings, token: str) -> Unsubscribe:
    """Record the opt-out the token names; 404 if the token or its user is unknown."""
    unsubscribe = claim_of(settings, token)
    async with engine.begin() as conn:
        found = await conn.execute(
            _OPT_OUT,
            {
                "tenant_id": unsubscribe.tenant_id,
                "user_id": unsubscribe.user_id,
                "category": unsubscribe.category,
                "choice": {unsubscribe.channel.value: False},
            },
        )
        if found.first() is None:
            raise not_found("unsubscribe link")
    return unsubscribe
