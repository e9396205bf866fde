"""One-click unsubscribe: read a signed token and opt its user out of its category on
its channel (RFC 8058). Doing it twice changes nothing more."""

from __future__ import annotations

from api.errors import not_found
from herald.settings import Settings
from herald.unsubscribe import Unsubscribe, read_token


def claim_of(settings: Settings, token: str) -> Unsubscribe:
    """What the token opts out of; a tampered or foreign token is a 404."""
    unsubscribe = read_token(settings, token)
    if unsubscribe is None:
        raise not_found("unsubscribe link")
    return unsubscribe
