"""Signed VERP bounce addresses: ``bounces+<notification id>.<mac>@<bounce domain>``.

Every email Herald sends has its own envelope sender, so a bounce names the notification
it is about. The MAC (HMAC-SHA256 keyed from ``HERALD_UNSUBSCRIBE_SECRET``, truncated to
80 bits, base32) makes those addresses Herald's own: knowing a notification id is not
enough to mark it undelivered and set off a fallback send. The local part stays within
RFC 5321's 64 octets, and is compared without regard to case, as relays may change it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from email.utils import parseaddr

from herald.settings import Settings

# Keeps these MACs apart from anything else signed with the same secret.
_PURPOSE = b"herald.bounce-address.v1:"
_MAC_BYTES = 10


def bounce_mailbox(settings: Settings) -> tuple[str, str]:
    """The local part (without any ``+tag``) and domain of ``HERALD_BOUNCE_ADDRESS``."""
    local, _, domain = parseaddr(settings.bounce_address)[1].rpartition("@")
    return (local or "bounces").split("+", 1)[0], domain or "localhost"


def _mac(settings: Settings, notification_id: uuid.UUID) -> str:
    digest = hmac.new(
        settings.unsubscribe_secret.get_secret_value().encode(),
        _PURPOSE + notification_id.bytes,
        hashlib.sha256,
    ).digest()
    return base64.b32encode(digest[:_MAC_BYTES]).decode().lower()


def bounce_address(settings: Settings, notification_id: uuid.UUID) -> str:
    """The envelope sender of one notification's email; its bounces come back to it."""
    local, domain = bounce_mailbox(settings)
    return f"{local}+{notification_id}.{_mac(settings, notification_id)}@{domain}"


def bounced_notification(settings: Settings, address: str) -> uuid.UUID | None:
    """The notification a bounce address names, or None unless Herald made the address
    (wrong domain, no MAC, a MAC that does not match)."""
    local, domain = bounce_mailbox(settings)
    mailbox, _, at_domain = address.strip().strip("<>").rpartition("@")
    prefix = f"{local}+".lower()
    mailbox = mailbox.lower()
    if at_domain.lower() != domain.lower() or not mailbox.startswith(prefix):
        return None
    named, _, mac = mailbox[len(prefix) :].partition(".")
    try:
        notification_id = uuid.UUID(named)
    except ValueError:
        return None
    # As bytes: compare_digest refuses non-ASCII text, which an SMTPUTF8 address may hold.
    if not hmac.compare_digest(mac.encode(), _mac(settings, notification_id).encode()):
        return None
    return notification_id
