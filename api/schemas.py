"""Request and response bodies of the REST API: the public contract (OpenAPI at ``/docs``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal
from zoneinfo import available_timezones

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)

from herald.contracts import (
    E164,
    TRANSACTIONAL,
    CategoryName,
    Channel,
    Locale,
    QuietHours,
    Status,
    TemplateKey,
    UserId,
    storable,
)

MAX_TEMPLATE_CHARS = 32_768
_TIMEZONES = frozenset(available_timezones())


class Preferences(BaseModel):
    """Which channels the user accepts (all by default)."""

    model_config = ConfigDict(extra="forbid")

    email: bool = True
    sms: bool = True
    push: bool = True
    # Per category and channel: ``{"marketing": {"email": false}}`` (unnamed: accepted).
    categories: dict[CategoryName, dict[Channel, bool]] = Field(default_factory=dict)

    @field_validator("categories")
    @classmethod
    def _not_transactional(
        cls, value: dict[str, dict[Channel, bool]]
    ) -> dict[str, dict[Channel, bool]]:
        if TRANSACTIONAL in value:
            raise ValueError("transactional messages cannot be opted out of")
        return value

    @model_serializer(mode="wrap")
    def _without_empty_categories(self, handler: SerializerFunctionWrapHandler) -> Any:
        # Users without category choices look as they did before categories existed.
        dumped = handler(self)
        if isinstance(dumped, dict) and not dumped.get("categories"):
            dumped.pop("categories", None)
        return dumped


class UserFields(BaseModel):
    """A recipient's contact points and preferences."""

    model_config = ConfigDict(extra="forbid")

    email: EmailStr | None = None
    phone: str | None = Field(default=None, description="E.164, e.g. +447700900123")
    locale: Locale | None = None
    timezone: str | None = None
    preferences: Preferences = Field(default_factory=Preferences)
    quiet_hours: QuietHours | None = Field(
        default=None, description="Only urgent messages in this daily window (in `timezone`)."
    )

    @field_validator("phone")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        if value is not None and not E164.match(value):
            raise ValueError("phone must be E.164: '+' then 7 to 15 digits, e.g. +447700900123")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None and value not in _TIMEZONES:
            raise ValueError(f"unknown IANA timezone {value!r}, e.g. Europe/London")
        return value


class UserCreate(UserFields):
    """``POST /v1/users``."""

    id: UserId


class UserOut(UserFields):
    """A stored recipient."""

    model_config = ConfigDict(extra="ignore")

    id: str
    created_at: datetime
    updated_at: datetime


class DeviceIn(BaseModel):
    """A push token for one of the user's devices."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=4096)
    platform: Literal["ios", "android", "web"]


class DeviceOut(DeviceIn):
    """A registered device."""

    model_config = ConfigDict(extra="ignore")

    id: int
    created_at: datetime


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


class NotificationAccepted(BaseModel):
    """The answer to a submission."""

    id: uuid.UUID
    status: Status
    status_url: str


class NotificationOut(BaseModel):
    """``GET /v1/notifications/{id}``."""

    id: uuid.UUID
    channel: Channel
    user_id: str
    template: str
    template_version: int | None
    status: Status
    attempts: int
    provider: str | None
    provider_message_id: str | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    cycle: int = 1
    send_at: datetime | None = None
    fallback: list[Channel] = Field(default_factory=list)
    # A request that joined a digest: the digest, and once it closed, the notification
    # it was sent as (whose status this one then shows).
    digest_id: uuid.UUID | None = None
    digest_notification_id: uuid.UUID | None = None
    # Made with a test key: never reached a provider.
    test: bool = False
    # The broadcast this notification is one recipient of, if any.
    broadcast_id: uuid.UUID | None = None

    @field_validator("fallback", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return [] if value is None else value


class NotificationPage(BaseModel):
    """One page of ``GET /v1/notifications``; pass ``next_cursor`` as ``cursor`` for more."""

    items: list[NotificationOut]
    next_cursor: str | None


class EventOut(BaseModel):
    """One entry of the append-only log."""

    status: Status
    attempt: int
    at: datetime
    detail: str | None
    provider: str | None = None
    cycle: int = 1
