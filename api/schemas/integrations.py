"""Per-tenant integrations: their REST bodies, and each provider's ``config`` fields
(API.md, "Providers and integrations"). Every value of a config is a string; a config
names only the fields its provider takes."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any

from cryptography.exceptions import UnsupportedAlgorithm
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from activities.providers.push import ServiceAccount
from herald.contracts import Channel, Text
from herald.receipts_email import NotConfigured, load_public_key


def _as_text(value: Any) -> Any:
    # Numbers and booleans where a string is documented (a port, starttls) are taken as
    # the string they read as.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


Field_ = Annotated[Text, BeforeValidator(_as_text), Field(min_length=1, max_length=1024)]
# Long credentials: PEM private keys, service account JSON.
LongField = Annotated[Text, Field(min_length=1, max_length=16384)]
Url = Annotated[Text, Field(min_length=1, max_length=2048, pattern=r"^https?://")]
Port = Annotated[
    Text, BeforeValidator(_as_text), Field(pattern=r"^[0-9]{1,5}$", description="1-65535")
]
Flag = Annotated[Text, BeforeValidator(_as_text), Field(pattern=r"^(true|false)$")]


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=False)

    base_url: Url | None = Field(
        default=None, description="The provider's endpoint (a regional one, or a local fake)"
    )


class _Sender(_Config):
    sender: Field_ | None = Field(default=None, alias="from")


class SmtpConfig(_Sender):
    host: Field_
    port: Port = "25"
    username: Field_ | None = None
    password: Field_ | None = None
    starttls: Flag | None = None


def _ec_public_key(value: str) -> str:
    # Parsed as the receipts route will parse it, so a key that is stored also verifies.
    try:
        load_public_key(value)
    except (NotConfigured, UnsupportedAlgorithm):
        raise ValueError(
            "must be an EC public key: the verification key SendGrid shows (base64 DER) or PEM"
        ) from None
    return value


class SendgridConfig(_Sender):
    api_key: Field_
    webhook_public_key: Annotated[Field_, AfterValidator(_ec_public_key)] | None = Field(
        default=None, description="The Event Webhook's verification key, for its receipts"
    )


class MailgunConfig(_Sender):
    api_key: Field_
    domain: Field_
    webhook_signing_key: Field_ | None = Field(
        default=None, description="The webhook signing key, for its receipts"
    )


class PostmarkConfig(_Sender):
    server_token: Field_
    # Basic auth of the webhook URL (a user name cannot hold ":"); neither set: a login
    # derived from the integration, shown in its ``receipts_url``.
    webhook_username: Annotated[Field_, Field(pattern=r"^[^:]*$")] | None = None
    webhook_password: Field_ | None = Field(default=None, validate_default=True)

    @field_validator("webhook_password")
    @classmethod
    def _login_is_whole(cls, password: str | None, info: ValidationInfo) -> str | None:
        if "webhook_username" in info.data and (info.data["webhook_username"] is None) != (
            password is None
        ):
            raise ValueError("webhook_username and webhook_password are set together or not at all")
        return password


class SesConfig(_Sender):
    access_key_id: Field_
    secret_access_key: Field_
    region: Annotated[Text, Field(pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]$")]


class TwilioConfig(_Config):
    account_sid: Field_
    auth_token: Field_
    sender: Field_ = Field(alias="from")


class VonageConfig(_Config):
    api_key: Field_
    api_secret: Field_
    sender: Field_ = Field(alias="from")
    signature_secret: Field_ | None = None


class FcmConfig(_Config):
    """Exactly one credential: a Google service account key file (as a string or the
    JSON object itself), from which access tokens are minted, or a static ``token``."""

    project_id: Field_
    service_account_json: LongField | None = None
    token: Field_ | None = None

    @field_validator("service_account_json", mode="before")
    @classmethod
    def _key_file(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return json.dumps(value)
        return value

    @field_validator("service_account_json")
    @classmethod
    def _readable_key_file(cls, value: str | None) -> str | None:
        if value is not None:
            ServiceAccount.read(value)  # its ValueError names the fault, never the value
        return value

    @model_validator(mode="after")
    def _one_credential(self) -> FcmConfig:
        if (self.service_account_json is None) == (self.token is None):
            raise ValueError("fcm config needs one of 'service_account_json' or 'token'")
        return self


class ApnsConfig(_Config):
    team_id: Field_
    key_id: Field_
    private_key: LongField
    topic: Field_
    environment: Annotated[Text, Field(pattern=r"^(production|development|sandbox)$")] | None = None


class OnesignalConfig(_Config):
    app_id: Field_
    api_key: Field_


class SlackConfig(_Config):
    bot_token: Field_


class WebhookChatConfig(_Config):
    """Teams and Discord: the webhook URL is the user's chat address."""


# (channel, provider) -> its config's fields, as the contract lists them.
CONFIGS: dict[tuple[str, str], type[_Config]] = {
    ("email", "smtp"): SmtpConfig,
    ("email", "sendgrid"): SendgridConfig,
    ("email", "mailgun"): MailgunConfig,
    ("email", "postmark"): PostmarkConfig,
    ("email", "ses"): SesConfig,
    ("sms", "twilio"): TwilioConfig,
    ("sms", "vonage"): VonageConfig,
    ("push", "fcm"): FcmConfig,
    ("push", "apns"): ApnsConfig,
    ("push", "onesignal"): OnesignalConfig,
    ("chat", "slack"): SlackConfig,
    ("chat", "teams"): WebhookChatConfig,
    ("chat", "discord"): WebhookChatConfig,
}

Name = Annotated[Text, Field(min_length=1, max_length=128)]
Priority = Annotated[int, Field(ge=0, le=1_000_000, description="Lowest is tried first")]
Rate = Annotated[float, Field(gt=0, le=100_000, description="Messages per second at most")]
# The raw config before its provider's model reads it: bounded in size here.
RawConfig = Annotated[dict[str, Any], Field(max_length=32)]


class IntegrationIn(BaseModel):
    """``POST /v1/integrations``."""

    model_config = ConfigDict(extra="forbid")

    channel: Channel
    provider: Annotated[Text, Field(min_length=1, max_length=32)]
    name: Name | None = None
    config: RawConfig = Field(default_factory=dict)
    priority: Priority | None = None
    enabled: bool = True
    rate_per_second: Rate | None = None


class IntegrationPatch(BaseModel):
    """``PATCH /v1/integrations/{id}``: only what is sent changes. ``config`` is merged
    into the stored one (a field set to null is removed)."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    priority: Priority | None = None
    enabled: bool | None = None
    rate_per_second: Rate | None = None
    config: RawConfig | None = None


class IntegrationOut(BaseModel):
    """An integration; its credentials are never shown, only which fields are set."""

    id: uuid.UUID
    channel: str
    provider: str
    name: str
    priority: int
    enabled: bool
    rate_per_second: float | None = None
    config: dict[str, str] = Field(
        description='Each config field that is set, as "[set]": values are never shown'
    )
    created_at: datetime
    updated_at: datetime
    last_error: str | None = None
    last_error_at: datetime | None = None
    receipts_url: str | None = Field(
        default=None,
        description="Where to point the provider's delivery webhook (sendgrid, mailgun, "
        "postmark; null for the others). A postmark integration without its own "
        "webhook_username and webhook_password carries the login Herald derived for it as "
        "the URL's user:password@, which is how Postmark's webhook settings take basic auth",
    )


class CheckOut(BaseModel):
    """``POST /v1/integrations/{id}/check``."""

    ok: bool
    detail: str
