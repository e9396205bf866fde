"""The console's forms that create things: what the REST API's own schemas and services
refuse, keyed by the form field it names, so each message shows next to its field.

Pages never check input themselves: they build the REST request model from the form
(``TemplateIn``, ``UserCreate``, ``BroadcastIn``, ...) and call the REST service, and
this module only says where on the form each refusal belongs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from api.errors import ApiError

# Where a refusal that names no field goes: the notice above the form.
WHOLE_FORM = "_form"
# A model-level message that starts with a field's name ("data: ...") is about that field.
_NAMED = re.compile(r"^(?:Value error, )?([a-z_]+)[.:]")
_SHOWN_INPUT = 40


def _where(loc: tuple[Any, ...], renames: Mapping[str, str]) -> tuple[str, tuple[Any, ...]]:
    """The form field of an error location, and what of the location is left inside it."""
    parts = [str(part) for part in loc]
    for size in range(len(parts), 0, -1):
        dotted = ".".join(parts[:size])
        if dotted in renames:
            return renames[dotted], loc[size:]
    return (parts[0], loc[1:]) if parts else (WHOLE_FORM, ())


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= _SHOWN_INPUT else text[:_SHOWN_INPUT] + "…"


def field_errors(
    err: ValidationError | ApiError,
    *,
    at: tuple[str, ...] = (),
    renames: Mapping[str, str] | None = None,
    fields: frozenset[str] = frozenset(),
    conflict: str | None = None,
) -> dict[str, str]:
    """The refusal's messages by form field. ``at`` prefixes every location (a value
    checked alone, as a path parameter is over REST); ``renames`` maps a dotted location
    (``audience.topic``) to the form field holding it; a message with no location that
    names one of ``fields`` first goes to that field; a 409 (it exists already) goes to the
    ``conflict`` field, the one naming what exists."""
    renames = renames or {}
    if isinstance(err, ApiError):
        field = renames.get(err.field, err.field) if err.field else WHOLE_FORM
        if err.field is None and err.status_code == 409 and conflict:
            field = conflict
        return {field: err.message}
    found: dict[str, list[str]] = {}
    for error in err.errors():
        loc = (*at, *error.get("loc", ()))
        message = str(error.get("msg", ""))
        field, inside = _where(loc, renames)
        if field == WHOLE_FORM:
            named = _NAMED.match(message)
            if named and named.group(1) in fields:
                field = named.group(1)
        if inside:
            where = ".".join(str(part) for part in inside)
            if isinstance(inside[-1], int):  # an item of a list: say which one
                where = f"{where} ({_shown(error.get('input'))})"
            message = f"{where}: {message}"
        found.setdefault(field, []).append(message)
    return {field: "; ".join(messages) for field, messages in found.items()}


def json_object(text: str, field: str) -> dict[str, Any]:
    """The JSON object typed into ``field``, or a 422 naming it."""
    try:
        value = json.loads(text or "{}")
    except ValueError as err:
        raise ApiError(422, f"not JSON: {err}", field=field, where="form") from err
    if not isinstance(value, dict):
        raise ApiError(422, 'must be a JSON object, e.g. {"name": "Ada"}', field=field)
    return value


def user_ids(text: str) -> list[str]:
    """User ids typed one per line (or separated by spaces or commas)."""
    return [part for part in re.split(r"[\s,]+", text) if part]


def typed(values: Mapping[str, str]) -> dict[str, str]:
    """The fields that were filled in: an empty optional field is as if not sent."""
    return {name: value for name, value in values.items() if value != ""}
