"""Bodies of the REST routes the console is built on (usable without it): the template
list and preview, the user list and API keys. Part of the public contract like
``api/schemas.py``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.schemas import MAX_TEMPLATE_CHARS, DeviceOut, UserOut
from herald.contracts import Channel, Locale, storable


class TemplateVersionSummary(BaseModel):
    """The latest version of a template for one channel and locale."""

    channel: Channel
    locale: str
    version: int
    created_at: datetime


class TemplateSummary(BaseModel):
    """One template key: its channels, locales and the latest version of each."""

    key: str
    channels: list[Channel]
    locales: list[str]
    latest: list[TemplateVersionSummary]
    updated_at: datetime


class TemplatePage(BaseModel):
    """One page of ``GET /v1/templates`` (by key); pass ``next_cursor`` as ``cursor``."""

    items: list[TemplateSummary]
    next_cursor: str | None


class PreviewIn(BaseModel):
    """``POST /v1/templates/{key}/preview``: render with sample data; nothing is sent.

    Without ``body`` the stored template renders (its latest version in the best locale,
    or ``version``); with ``body`` (and ``subject``) an unsaved draft renders instead.
    """

    model_config = ConfigDict(extra="forbid")

    channel: Channel
    locale: Locale | None = None
    version: int | None = Field(default=None, ge=1, le=1_000_000)
    data: dict[str, Any] = Field(default_factory=dict)
    subject: str | None = Field(default=None, max_length=998)
    body: str | None = Field(default=None, min_length=1, max_length=MAX_TEMPLATE_CHARS)

    @field_validator("subject", "body")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        return storable(value)


class PreviewOut(BaseModel):
    """What the recipient would get: for email, ``html`` and its plain-text ``body``."""

    channel: Channel
    locale: str
    version: int | None
    subject: str | None
    body: str
    html: str | None = None


class UserPage(BaseModel):
    """One page of ``GET /v1/users`` (by id); pass ``next_cursor`` as ``cursor``."""

    items: list[UserOut]
    next_cursor: str | None


class DeviceList(BaseModel):
    """``GET /v1/users/{id}/devices``."""

    items: list[DeviceOut]


class ApiKeyIn(BaseModel):
    """``POST /v1/api-keys``: a ``test`` key's notifications never reach a provider."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["live", "test"] = "live"


class ApiKeyOut(BaseModel):
    """An API key as listed: never the key itself."""

    id: uuid.UUID
    prefix: str
    kind: Literal["live", "test"]
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
