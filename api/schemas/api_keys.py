"""A tenant's API keys: their REST request and response bodies
(OpenAPI at ``/docs``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

# What a key may do: ``send`` (submit, and read what it sent), ``read`` (every GET),
# ``manage`` (users, templates, topics, webhooks), ``admin`` (keys, the console).
ApiKeyScope = Literal["send", "read", "manage", "admin"]


class ApiKeyIn(BaseModel):
    """``POST /v1/api-keys``: a ``test`` key's notifications never reach a provider; a key
    has every scope unless ``scopes`` names fewer."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["live", "test"] = "live"
    scopes: list[ApiKeyScope] | None = Field(default=None, min_length=1, max_length=4)


class ApiKeyOut(BaseModel):
    """An API key as listed: never the key itself."""

    id: uuid.UUID
    prefix: str
    kind: Literal["live", "test"]
    scopes: list[ApiKeyScope]
    created_at: datetime
    last_used_at: datetime | None = Field(description="To within a minute.")
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    """A new key: ``key`` is shown this once and stored only as a hash."""

    key: str


class ApiKeyPage(BaseModel):
    """One page of ``GET /v1/api-keys``, newest first; pass ``next_cursor`` as ``cursor``."""

    items: list[ApiKeyOut]
    next_cursor: str | None
