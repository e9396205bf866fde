"""Opaque keyset cursors: the last row's sort key, so a page costs one index range scan
however deep it is (no OFFSET). Every paginated list makes and reads its cursors here."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from api.errors import unprocessable

# How the sort key of the lists ordered newest first, ``(created_at, id)``, is read back.
NEWEST_FIRST: Final[tuple[Callable[[str], Any], ...]] = (datetime.fromisoformat, uuid.UUID)


def encode_cursor(*values: Any) -> str:
    """A cursor naming the position after a row with these sort-key values."""
    raw = json.dumps(
        [value.isoformat() if isinstance(value, datetime) else str(value) for value in values]
    ).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str, *kinds: Callable[[str], Any]) -> tuple[Any, ...]:
    """The sort-key values of a cursor this API made, each read by its ``kinds``
    (``str``, ``uuid.UUID``, ``datetime.fromisoformat``, or ``NEWEST_FIRST``); 422
    naming ``cursor`` for anything else."""
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not isinstance(values, list) or len(values) != len(kinds):
            raise ValueError("wrong number of values")
        return tuple(kind(str(value)) for kind, value in zip(kinds, values, strict=True))
    except (ValueError, TypeError, binascii.Error, UnicodeError) as err:
        raise unprocessable("cursor", "cursor is not one this API returned", where="query") from err
