"""One-click unsubscribe (RFC 8058, RFC 2369): signed tokens, links and email headers.

A token names the tenant, user, category and channel it opts out of, signed with
``HERALD_UNSUBSCRIBE_SECRET`` (itsdangerous, HMAC-SHA1 with a salt of its own), so the
link needs no API key and cannot be altered into another user's or category's. Tokens
do not expire: a link in a message read months later still works, as RFC 8058 expects.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from email.utils import parseaddr
from urllib.parse import quote

from itsdangerous import BadData, URLSafeSerializer

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


def mailto(settings: Settings, token: str) -> str:
    """The RFC 2369 mailto, carrying the token in its subject."""
    address = settings.unsubscribe_mailto
    if not address:
        domain = parseaddr(settings.email_from)[1].rpartition("@")[2] or "localhost"
        address = f"unsubscribe@{domain}"
    return f"mailto:{address}?subject={quote('unsubscribe ' + token)}"


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
