"""Keyset cursors for the lists ordered newest first: ``(created_at, id)`` of the last
item of a page, opaque to clients."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime

from api.errors import unprocessable


def encode_cursor(created_at: datetime, item_id: uuid.UUID) -> str:
    """The cursor of the page after the item with this ``created_at`` and id."""
    raw = json.dumps([created_at.isoformat(), str(item_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """``encode_cursor``'s values back; a cursor this API did not make is a 422."""
    try:
        created_at, item_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(created_at), uuid.UUID(item_id)
    except (ValueError, TypeError) as err:
        raise unprocessable("cursor", "cursor is not one this API returned", where="query") from err
