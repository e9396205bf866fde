"""Flows: definitions, triggers and runs: their REST request and response bodies
(OpenAPI at ``/docs``). A definition's steps are read by ``herald.flows.definition``."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from herald.contracts import JsonText, Text, UserId
from herald.flows.models import RunStatus, StepState

# At most this many recipients per trigger; more go through a topic.
MAX_RECIPIENTS = 1000
# Every run carries the trigger's data (and each send step hands it to its notification):
# no more than a single request's body may hold, whatever the trigger's own limit.
MAX_DATA_BYTES = 64 * 1024
TopicKey = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]


class FlowOut(BaseModel):
    """One version of a flow."""

    key: str
    version: int
    name: str | None
    category: str | None
    steps: list[dict[str, Any]]
    created_at: datetime


class FlowPage(BaseModel):
    """One page of ``GET /v1/flows``: each flow's latest version, by key."""

    items: list[FlowOut]
    next_cursor: str | None


class TriggerIn(BaseModel):
    """``POST /v1/flows/{key}/trigger``: one run per recipient (or topic subscriber)."""

    model_config = ConfigDict(extra="forbid")

    recipients: list[UserId] | None = Field(default=None, min_length=1, max_length=MAX_RECIPIENTS)
    topic: TopicKey | None = None
    data: JsonText = Field(default_factory=dict)
    idempotency_key: Text | None = Field(default=None, min_length=1, max_length=200)
    cancellation_key: Text | None = Field(default=None, min_length=1, max_length=256)

    @field_validator("data")
    @classmethod
    def _small_enough(cls, value: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(value, separators=(",", ":")).encode())
        if size > MAX_DATA_BYTES:
            raise ValueError(f"data is {size} bytes as JSON; at most {MAX_DATA_BYTES}")
        return value

    @model_validator(mode="after")
    def _one_audience(self) -> TriggerIn:
        if (self.recipients is None) == (self.topic is None):
            raise ValueError("a trigger names exactly one of 'recipients' and 'topic'")
        return self


class QueuedFlowTrigger(BaseModel):
    """A RabbitMQ ingest message that triggers a flow: the trigger's body plus the
    flow's key, one recipient as ``user_id`` or several as ``recipients``, and
    optionally the tenant (checked against the publishing AMQP user's)."""

    model_config = ConfigDict(extra="forbid")

    flow: Text = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")
    user_id: UserId | None = None
    recipients: list[UserId] | None = Field(default=None, min_length=1, max_length=MAX_RECIPIENTS)
    topic: TopicKey | None = None
    data: JsonText = Field(default_factory=dict)
    idempotency_key: Text | None = Field(default=None, min_length=1, max_length=200)
    cancellation_key: Text | None = Field(default=None, min_length=1, max_length=256)
    tenant: Text | None = Field(default=None, max_length=128)

    @model_validator(mode="after")
    def _one_audience(self) -> QueuedFlowTrigger:
        if self.user_id is not None and self.recipients is not None:
            raise ValueError("a flow message names 'user_id' or 'recipients', not both")
        return self

    def as_trigger(self) -> TriggerIn:
        """The REST trigger body it stands for (checked as that is)."""
        recipients = [self.user_id] if self.user_id is not None else self.recipients
        return TriggerIn.model_validate(
            {
                "recipients": recipients,
                "topic": self.topic,
                "data": self.data,
                "idempotency_key": self.idempotency_key,
                "cancellation_key": self.cancellation_key,
            }
        )


class RunRef(BaseModel):
    """A recipient's run."""

    user_id: str
    run_id: uuid.UUID


class TriggerAccepted(BaseModel):
    """``202``: the trigger and its runs, each started durably; for a topic, where its
    runs are listed as they start (``GET /v1/flow-runs?trigger_id=``)."""

    trigger_id: uuid.UUID
    runs: list[RunRef] | None = None
    status_url: str | None = None


class FlowRunOut(BaseModel):
    """``GET /v1/flow-runs/{id}``: a run and each step it reached."""

    id: uuid.UUID
    flow: str
    version: int
    user_id: str
    status: RunStatus
    test: bool
    trigger_id: uuid.UUID
    cancellation_key: str | None
    steps: list[StepState]
    created_at: datetime
    updated_at: datetime


class FlowRunPage(BaseModel):
    """One page of ``GET /v1/flow-runs``, newest first."""

    items: list[FlowRunOut]
    next_cursor: str | None


class CancelRunsIn(BaseModel):
    """``POST /v1/flow-runs/cancel``."""

    model_config = ConfigDict(extra="forbid")

    cancellation_key: Text = Field(min_length=1, max_length=256)


class CancelRunsOut(BaseModel):
    """How many running runs were asked to stop."""

    cancelled: int
