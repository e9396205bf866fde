"""Opaque keyset cursors: the last row's sort key, so a page costs one index range scan
however deep it is (no OFFSET)."""

from __future__ import annotations

import base64
import json
from typing import Any

from api.errors import unprocessable


def encode_cursor(*values: Any) -> str:
    """A cursor naming the position after a row with these sort-key values."""
    raw = json.dumps([str(value) for value in values]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str, size: int) -> list[str]:
    """The sort-key values of a cursor this API made; 422 naming ``cursor`` otherwise."""
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except ValueError as err:
        raise unprocessable("cursor", "cursor is not one this API returned", where="query") from err
    if not isinstance(values, list) or len(values) != size:
        raise unprocessable("cursor", "cursor is not one this API returned", where="query")
    return [str(value) for value in values]
