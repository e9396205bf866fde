"""Hostile and careless input, kept in one place: what the API's routes, query strings and
the bridge's queued messages are fed by the fuzz tests (``tests/api/test_fuzz.py``,
``tests/bridge/test_hostile_messages.py``).

Each entry names what it is, so a failure says which value broke what.
"""

from __future__ import annotations

import json
from typing import Any

NUL = "a\x00b"
LONE_SURROGATE = "a\ud800b"
# 10 MB: far over every text limit and the request body limit.
HUGE = "x" * (10 * 1024 * 1024)
# Over PostgreSQL's bigint and far over any field's range; JSON allows any size.
HUGE_INT = 10**400
DEEP_LEVELS = 5000


def deep(levels: int = DEEP_LEVELS) -> Any:
    """A JSON value nested ``levels`` deep (lists in lists)."""
    value: Any = []
    for _ in range(levels):
        value = [value]
    return value


# Values that fit in a JSON document (and so in any string, number or object field).
TEXT: dict[str, Any] = {
    "nul": NUL,
    "nul-only": "\x00",
    "lone-surrogate": LONE_SURROGATE,
    "replacement-char": "\ufffd",
    "rtl-and-zero-width": "\u202e\u200bx",
    "newline": "a\nb",
    "10mb": HUGE,
}
VALUES: dict[str, Any] = {
    **TEXT,
    "huge-int": HUGE_INT,
    "negative-huge-int": -HUGE_INT,
    "float-inf-like": 1e308,
    "deep-json": deep(),
    "nul-key-object": {"\x00": "x"},
    "surrogate-key-object": {"\ud800": "x"},
    "nested-nul": {"a": [{"b": NUL}]},
}
# Query-string values, as raw percent-encoded text (what a client puts on the wire).
QUERY: dict[str, str] = {
    "nul": "a%00b",
    "nul-only": "%00",
    "invalid-utf8": "%FF%FE",
    "overlong-utf8": "%C0%80",
    "lone-surrogate-utf8": "%ED%A0%80",
    # Near the longest URL a client library builds (httpx: 64 KiB).
    "60kb": "x" * 60_000,
    "huge-int": "9" * 400,
    "negative": "-1",
}
# Raw bodies that are not what JSON or UTF-8 allow.
INVALID_UTF8 = b'{"user_id": "\xff\xfe"}'


def dumps(value: Any) -> bytes:
    """``value`` as JSON bytes, lone surrogates escaped as JSON allows (``\\ud800``)."""
    return json.dumps(value, ensure_ascii=True).encode()


def dumps_deep(levels: int = DEEP_LEVELS) -> str:
    """Deep JSON as text, without building it through a recursive encoder."""
    return "[" * levels + "]" * levels
