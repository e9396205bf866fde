"""Which database errors are the client's fault, and which field caused them.

PostgreSQL answers a value it cannot take (a NUL character, text that is not UTF-8, a
number out of range, a string too long, a malformed uuid or date) with an error of SQLSTATE
class ``22`` ("data exception"); asyncpg refuses some of the same values before sending
them (``invalid input for query argument $1``), and Python refuses to encode a lone
surrogate. None of these will ever succeed on a retry: the REST API answers them with a
``422`` naming the field, and the bridge dead-letters the message with the reason. Only
connection-level failures mean a service is down.

Validation at the edges (``herald.contracts.Text``) keeps most such values out; this is
the net behind it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from herald.contracts import has_nul

# SQLSTATE class 22 is "data exception" (22001 string too long, 22003 numeric out of
# range, 22021 character not in repertoire, 22P02 invalid text representation, 22P05
# untranslatable character, ...).
_DATA_EXCEPTION_CLASS = "22"
# What the message says when no SQLSTATE is at hand (asyncpg's client-side refusals,
# errors re-raised as text).
_DATA_MESSAGES = re.compile(
    r"invalid byte sequence|invalid input for query argument|unsupported Unicode escape"
    r"|out of range|value too long|invalid input syntax|surrogates not allowed"
    r"|null character not permitted|\\u0000|0x00",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class DataProblem:
    """A value the database refused: ``reason`` for the client, ``field`` when known."""

    reason: str
    field: str | None = None


def _chain(err: BaseException) -> Iterable[BaseException]:
    """``err`` and what it wraps (SQLAlchemy's ``orig``, ``__cause__``), each once."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [err]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [getattr(current, "orig", None), current.__cause__, current.__context__]


def _sqlstate(err: BaseException) -> str | None:
    state = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)
    return state if isinstance(state, str) else None


def is_data_error(err: BaseException) -> bool:
    """Whether ``err`` is the database (or its driver) refusing a value: the sender's
    fault, never an outage, so retrying cannot help."""
    for cause in _chain(err):
        if isinstance(cause, UnicodeError):
            return True
        state = _sqlstate(cause)
        if state is not None:
            # A SQLSTATE decides: class 22 is the value's fault, anything else is not.
            return state.startswith(_DATA_EXCEPTION_CLASS)
        if type(cause).__name__ == "DataError" and "sqlalchemy" not in type(cause).__module__:
            # asyncpg's client-side ``DataError`` (a value it cannot encode).
            return True
    return bool(_DATA_MESSAGES.search(_first_line(err)))


def _first_line(err: BaseException) -> str:
    return str(err).split("\n", 1)[0]


def describe(err: BaseException, candidates: Mapping[str, Any] | None = None) -> DataProblem:
    """What the client sent wrong, in one line, and the field when it can be told: the
    first of ``candidates`` (e.g. the request's query parameters) whose value the
    database could not store."""
    field = next((name for name, value in (candidates or {}).items() if has_nul(value)), None)
    for cause in _chain(err):
        if isinstance(cause, UnicodeError):
            return DataProblem("text that is not valid UTF-8 (a lone surrogate?)", field)
    message = _first_line(err)
    # Drop SQLAlchemy's ``(dialect.Error) <class ...>:`` prefixes; keep PostgreSQL's words.
    message = re.sub(r"^(\([^)]*\)\s*)?(<class '[^']*'>:\s*)?", "", message).strip()
    if "0x00" in message or "\\u0000" in message or "unsupported Unicode escape" in message:
        message = "may not contain the NUL character (\\u0000)"
    return DataProblem(message[:300] or "a value the database cannot store", field)
