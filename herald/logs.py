"""Structured JSON logging for every Herald process.

Every line carries the component and whatever correlation context is bound where it was
logged: the request id (``X-Request-ID``, or one the API made), the notification id
and the tenant. The API binds it per request; workers bind it per activity from the
context that travels with the workflow (see ``herald.correlation``). Email addresses,
phone numbers and bearer tokens are masked on the way out, so a provider's error text
that echoes an address never lands in a log.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pythonjsonlogger.json import JsonFormatter

CONTEXT_FIELDS = ("request_id", "notification_id", "tenant")

_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "herald_log_context", default=None
)

_PII = (
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "<email>"),
    (re.compile(r"(?<![\w+])\+\d{7,15}\b"), "<phone>"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[\w.~+/=-]+"), r"\1 <redacted>"),
)


def current_context() -> dict[str, str]:
    """The correlation fields bound where this is called."""
    return dict(_context.get() or {})


@contextmanager
def log_context(**fields: str | None) -> Iterator[dict[str, str]]:
    """Bind correlation fields (``request_id``, ``notification_id``, ``tenant``) to every
    line logged inside the block, on top of what is already bound."""
    given = {key: str(value) for key, value in fields.items() if value}
    bound = {**(_context.get() or {}), **given}
    token = _context.set(bound)
    try:
        yield bound
    finally:
        _context.reset(token)


def redact(text: str) -> str:
    """``text`` with email addresses, phone numbers and credentials masked."""
    for pattern, replacement in _PII:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    return value


class HeraldJsonFormatter(JsonFormatter):
    """JSON lines with the bound correlation context added and PII masked."""

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        """The standard fields, then the bound context (explicit ``extra`` wins)."""
        super().add_fields(log_data, record, message_dict)
        for key, value in (_context.get() or {}).items():
            log_data.setdefault(key, value)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        """Mask PII in every string value."""
        return {key: _redact_value(value) for key, value in log_data.items()}


def configure_logging(level: str = "INFO", component: str = "herald") -> None:
    """One JSON object per line on stderr, with the component name on every line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        HeraldJsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "asctime": "time"},
            static_fields={"component": component},
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "aiormq", "aio_pika", "mail.log"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
