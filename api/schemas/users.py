"""Recipients and their devices: their REST request and response bodies
(OpenAPI at ``/docs``)."""

from __future__ import annotations

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

from herald import chat
from herald.contracts import (
    E164,
    TRANSACTIONAL,
    CategoryName,
    Channel,
    Locale,
    QuietHours,
    Text,
    UserId,
)
from herald.settings import get_settings


class Preferences(BaseModel):
    """Which channels the user accepts (all by default)."""

    model_config = ConfigDict(extra="forbid")

    email: bool = True
    sms: bool = True
    push: bool = True
    # The in-app inbox; shown only when turned off (users looked this way before it).
    inapp: bool = True
    # Slack, Teams or Discord; shown only when turned off, like ``inapp``.
    chat: bool = True
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
        if isinstance(dumped, dict) and dumped.get("inapp") is True:
            dumped.pop("inapp", None)
        if isinstance(dumped, dict) and dumped.get("chat") is True:
            dumped.pop("chat", None)
        return dumped


class UserFields(BaseModel):
    """A recipient's contact points and preferences."""

    model_config = ConfigDict(extra="forbid")

    email: EmailStr | None = None
    phone: str | None = Field(default=None, description="E.164, e.g. +447700900123")
    chat: dict[str, str] | None = Field(
        default=None,
        description='One of {"slack": "<channel id>"}, {"teams": "<incoming webhook url>"}, '
        '{"discord": "<webhook url>"}',
    )
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

    @field_validator("chat")
    @classmethod
    def _chat(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        return chat.check_address(value, chat.origins(get_settings().chat_webhook_origins))

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None and value not in _TIMEZONES:
            raise ValueError(f"unknown IANA timezone {value!r}, e.g. Europe/London")
        return value


class UserCreate(UserFields):
    """``POST /v1/users``."""

    id: UserId


class UserPatch(UserFields):
    """``PATCH /v1/users/{id}``: only the fields the body names change (``null`` clears a
    contact field or ``quiet_hours``). ``preferences`` merge: the channel flags it names,
    and per category the channels it names; everything else stays as it is."""


class UserOut(UserFields):
    """A stored recipient."""

    model_config = ConfigDict(extra="ignore")

    id: str
    created_at: datetime
    updated_at: datetime


class DeviceIn(BaseModel):
    """A push token for one of the user's devices."""

    model_config = ConfigDict(extra="forbid")

    token: Text = Field(min_length=1, max_length=4096)
    platform: Literal["ios", "android", "web"]


class DeviceOut(DeviceIn):
    """A registered device."""

    model_config = ConfigDict(extra="ignore")

    id: int
    created_at: datetime


class UserPage(BaseModel):
    """One page of ``GET /v1/users`` (by id); pass ``next_cursor`` as ``cursor``."""

    items: list[UserOut]
    next_cursor: str | None


class DeviceList(BaseModel):
    """``GET /v1/users/{id}/devices``."""

    items: list[DeviceOut]


_TIMEZONES = frozenset(available_timezones())
