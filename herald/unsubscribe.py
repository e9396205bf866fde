"""One-click unsubscribe (RFC 8058, RFC 2369): signed tokens, links and email headers.

A token names the tenant, user, category and channel it opts out of, signed with
``HERALD_UNSUBSCRIBE_SECRET`` (itsdangerous, HMAC-SHA1 with a salt of its own), so the
link needs no API key and cannot be altered into another user's or category's. Tokens
do not expire: a link in a message read months later still works, as RFC 8058 expects.

The mailto of ``List-Unsubscribe`` goes to ``herald bounces`` (``unsubscribe@`` the bounce
domain unless ``HERALD_UNSUBSCRIBE_MAILTO`` says otherwise) with the token in its subject,
and opts out exactly as ``POST /u/{token}`` does. The token rides in the subject rather
than the address because it is longer than the 64 octets RFC 5321 allows a local part.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from email.utils import parseaddr
from urllib.parse import quote

from itsdangerous import BadData, URLSafeSerializer
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine

from herald.bounce_addresses import bounce_mailbox
from herald.contracts import TRANSACTIONAL, Channel
from herald.settings import Settings

_SALT = "herald.unsubscribe.v1"
ONE_CLICK = "List-Unsubscribe=One-Click"


@dataclass(frozen=True)
class Unsubscribe:
    """What one token opts out of."""

    tenant_id: uuid.UUID
    user_id: str
    category: str
    channel: Channel


def _serializer(settings: Settings) -> URLSafeSerializer:
    return URLSafeSerializer(settings.unsubscribe_secret.get_secret_value(), salt=_SALT)


def make_token(settings: Settings, unsubscribe: Unsubscribe) -> str:
    """A URL-safe signed token for ``unsubscribe``."""
    token: str = _serializer(settings).dumps(
        [
            str(unsubscribe.tenant_id),
            unsubscribe.user_id,
            unsubscribe.category,
            unsubscribe.channel.value,
        ]
    )
    return token


def read_token(settings: Settings, token: str) -> Unsubscribe | None:
    """What a token opts out of; None if it is tampered with, foreign or malformed."""
    try:
        tenant_id, user_id, category, channel = _serializer(settings).loads(token)
        return Unsubscribe(uuid.UUID(tenant_id), str(user_id), str(category), Channel(channel))
    except (BadData, ValueError, TypeError):
        return None


def unsubscribe_url(settings: Settings, token: str) -> str:
    """The one-click link: ``{HERALD_PUBLIC_URL}/u/{token}``."""
    return f"{settings.public_url.rstrip('/')}/u/{token}"


def mailbox(settings: Settings) -> str:
    """The address the mailto goes to: ``HERALD_UNSUBSCRIBE_MAILTO``, else ``unsubscribe@``
    the domain of ``HERALD_BOUNCE_ADDRESS`` (whose mail ``herald bounces`` takes)."""
    configured = parseaddr(settings.unsubscribe_mailto or "")[1]
    return configured or f"unsubscribe@{bounce_mailbox(settings)[1]}"


def mailto(settings: Settings, token: str) -> str:
    """The RFC 2369 mailto, carrying the token in its subject."""
    return f"mailto:{mailbox(settings)}?subject={quote('unsubscribe ' + token)}"


def token_in_subject(subject: str) -> str | None:
    """The token of a mail sent through the mailto: the subject's last word (a client
    may prefix something of its own)."""
    words = subject.split()
    return words[-1] if words else None


def links(settings: Settings, unsubscribe: Unsubscribe) -> tuple[str, dict[str, str]]:
    """The template's ``unsubscribe_url`` and, for email, the headers that offer it;
    nothing at all for a transactional message."""
    if unsubscribe.category == TRANSACTIONAL:
        return "", {}
    token = make_token(settings, unsubscribe)
    url = unsubscribe_url(settings, token)
    if unsubscribe.channel is not Channel.email:
        return url, {}
    return url, {
        "List-Unsubscribe": f"<{url}>, <{mailto(settings, token)}>",
        "List-Unsubscribe-Post": ONE_CLICK,
    }


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


async def opt_out(engine: AsyncEngine, unsubscribe: Unsubscribe) -> bool:
    """Record the opt-out (idempotent); False if its user no longer exists. The one
    writer for ``POST /u/{token}`` and the mailto alike."""
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
        return found.first() is not None
