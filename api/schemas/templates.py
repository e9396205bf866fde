"""Templates, their versions and previews: their REST request and response bodies
(OpenAPI at ``/docs``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
)

from herald.contracts import (
    TRANSACTIONAL,
    CategoryName,
    Channel,
    JsonText,
    Locale,
    TemplateKey,
    storable,
)

MAX_TEMPLATE_CHARS = 32_768


class TemplateIn(BaseModel):
    """``POST /v1/templates`` and ``PUT /v1/templates/{key}``."""

    model_config = ConfigDict(extra="forbid")

    key: TemplateKey
    channel: Channel
    locale: Locale = "en"
    subject: str | None = Field(default=None, max_length=998)
    body: str = Field(min_length=1, max_length=MAX_TEMPLATE_CHARS)
    category: CategoryName = Field(
        default=TRANSACTIONAL,
        description="Users may opt out of any category but `transactional`; emails of "
        "other categories carry one-click unsubscribe headers.",
    )

    @field_validator("subject", "body")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        return storable(value)


class TemplateOut(BaseModel):
    """One stored template version."""

    key: str
    channel: Channel
    locale: str
    version: int
    subject: str | None
    body: str
    created_at: datetime
    category: str = TRANSACTIONAL


class TemplateVersions(BaseModel):
    """``GET /v1/templates/{key}``: the latest version per channel and locale (or one version)."""

    key: str
    versions: list[TemplateOut]


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
    data: JsonText = Field(default_factory=dict)
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
