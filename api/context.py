"""Per-request context that middleware sets and services read, so neither imports the other."""

from __future__ import annotations

import contextvars

# The request's ``X-Request-ID`` (or the one the API made), set by ``RequestIdMiddleware``.
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
