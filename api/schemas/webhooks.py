"""Status webhook endpoints and their deliveries: their REST request and response bodies
(OpenAPI at ``/docs``)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
)

from herald.contracts import (
    Text,
)
from herald.webhooks import ALL_EVENTS, EVENT_NAMES


class WebhookIn(BaseModel):
    """``POST /v1/webhooks``."""

    model_config = ConfigDict(extra="forbid")

    url: Text = Field(max_length=2048, description="https, resolving to public addresses")
    events: list[str] = Field(
        default_factory=lambda: [ALL_EVENTS],
        min_length=1,
        max_length=len(EVENT_NAMES),
        description='Status names (e.g. "delivered"), or ["*"] for every status.',
    )

    @field_validator("events")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - EVENT_NAMES)
        if unknown:
            raise ValueError(
                f"unknown event {', '.join(map(repr, unknown))}; use status names or '*'"
            )
        return sorted(set(value))


class WebhookOut(BaseModel):
    """A webhook endpoint (its secret is shown only when it is created)."""

    id: uuid.UUID
    url: str
    events: list[str]
    created_at: datetime
    disabled_at: datetime | None = None
    disabled_reason: str | None = None


class WebhookCreated(WebhookOut):
    """The answer to ``POST /v1/webhooks``: the only time the secret is shown."""

    secret: str = Field(description="Verify each request's webhook-signature with it.")


class WebhookDeliveryOut(BaseModel):
    """One attempt to deliver one event to the endpoint."""

    event_id: str = Field(description="The webhook-id header and the body's id")
    notification_id: uuid.UUID
    type: str
    attempt: int
    status_code: int | None
    error: str | None
    at: datetime
    duration_ms: int
