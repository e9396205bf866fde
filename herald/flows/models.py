"""What crosses process boundaries for flows: the ``FlowRun`` workflow's input, its
activities' inputs and outputs, the ids a trigger derives, and the condition evaluation
a run does (pure and deterministic, so the workflow may call it)."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, Field

WORKFLOW: Final = "FlowRun"
# Trigger and run ids live in their own UUID namespace.
_FLOW_NAMESPACE: Final = uuid.UUID("3b0c8f5e-2d4a-4f61-9a7e-6c1d52e0b9a4")


class RunStatus(StrEnum):
    """Where a run is."""

    running = "running"
    completed = "completed"
    cancelled = "cancelled"
    failed = "failed"


class StepStatus(StrEnum):
    """Where one step of a run is."""

    running = "running"
    completed = "completed"
    skipped = "skipped"
    cancelled = "cancelled"
    failed = "failed"


def trigger_id_for(
    tenant_id: uuid.UUID, test: bool, flow_key: str, idempotency_key: str | None
) -> uuid.UUID:
    """A trigger's id: derived from an idempotency key (test keys' apart), else new."""
    if idempotency_key is None:
        return uuid.uuid4()
    mode = "test" if test else "live"
    return uuid.uuid5(_FLOW_NAMESPACE, f"trigger:{tenant_id}:{mode}:{flow_key}:{idempotency_key}")


def run_id_for(trigger_id: uuid.UUID, user_id: str) -> uuid.UUID:
    """One run per trigger and recipient: a retried trigger starts nobody twice."""
    return uuid.uuid5(_FLOW_NAMESPACE, f"run:{trigger_id}:{user_id}")


def step_notification_id(run_id: uuid.UUID, step_id: str) -> uuid.UUID:
    """A send step's notification: the same on every replay or retry of the step."""
    return uuid.uuid5(_FLOW_NAMESPACE, f"send:{run_id}:{step_id}")


def run_workflow_id(run_id: uuid.UUID | str) -> str:
    """``flow-run-<uuid>``: how a run is found in Temporal (no PII)."""
    return f"flow-run-{run_id}"


class StepState(BaseModel):
    """One reached step of a run, as ``GET /v1/flow-runs/{id}`` shows it."""

    id: str
    type: str
    status: StepStatus
    started_at: datetime | None = None
    ended_at: datetime | None = None
    notification_id: uuid.UUID | None = None
    outcome: str | None = None
    # A digest step: the run that carries this one (outcome ``digested``), or, on the
    # carrier, how many triggers it gathered (outcome ``carried``).
    carrier_run_id: uuid.UUID | None = None
    count: int | None = None


class RunIdentity(BaseModel):
    """Who and what a run is: everything its row holds besides progress."""

    run_id: uuid.UUID
    tenant_id: uuid.UUID
    test: bool = False
    flow_key: str
    version: int
    user_id: str
    trigger_id: uuid.UUID
    cancellation_key: str | None = None
    created_at: datetime

    @property
    def workflow_id(self) -> str:
        """The run's workflow id."""
        return run_workflow_id(self.run_id)


class FlowRunInput(BaseModel):
    """The input of one ``FlowRun``: the run, the stored steps of the version it
    started with, and the trigger's data."""

    run: RunIdentity
    tenant: str = ""
    category: str | None = None
    steps: list[dict[str, Any]]
    data: dict[str, Any] = Field(default_factory=dict)
    request_id: str | None = None


def run_for(template: FlowRunInput, user_id: str) -> FlowRunInput:
    """The input of the trigger's run for ``user_id``: the template with the recipient
    and the run id derived from the trigger and the recipient."""
    run = template.run.model_copy(
        update={"run_id": run_id_for(template.run.trigger_id, user_id), "user_id": user_id}
    )
    return template.model_copy(update={"run": run})


class RunProgress(BaseModel):
    """Input of ``record_run``: the run's status and steps so far (its whole row)."""

    run: RunIdentity
    status: RunStatus
    steps: list[StepState]


class SendStepRequest(BaseModel):
    """Input of ``send_flow_step``: one send step's notification, through the intake."""

    run: RunIdentity
    tenant: str = ""
    step: dict[str, Any]
    data: dict[str, Any] = Field(default_factory=dict)
    request_id: str | None = None
    # After a digest step: the run carries a digest, and the send's data gets the
    # gathered triggers' data as ``items`` (read from PostgreSQL) and their ``count``.
    digest: bool = False

    @property
    def notification_id(self) -> uuid.UUID:
        """The step's deterministic notification id."""
        return step_notification_id(self.run.run_id, str(self.step["id"]))


class SendStepResult(BaseModel):
    """What the intake said: ``accepted`` (now or before) or why not."""

    notification_id: uuid.UUID
    accepted: bool
    detail: str | None = None


class NotificationProgress(BaseModel):
    """Input and output of ``notification_progress``: a send step's notification now."""

    notification_id: uuid.UUID
    status: str | None = None
    delivered: bool = False
    read: bool = False


class NotificationsToCancel(BaseModel):
    """Input of ``cancel_flow_notifications``: a cancelled run's send steps."""

    notification_ids: list[uuid.UUID]


class ThrottleRequest(BaseModel):
    """Input of ``throttle_flow_step``: count this run against the window ending ``at``."""

    run: RunIdentity
    step_id: str
    key: str
    limit: int
    window_seconds: int
    at: datetime


class ThrottleResult(BaseModel):
    """Whether the run may go on."""

    admitted: bool


class DigestJoin(BaseModel):
    """Input of ``join_flow_digest``: the run reached a digest step at ``at``. Its data
    goes to PostgreSQL, never back through Temporal."""

    run: RunIdentity
    step_id: str
    key: str
    window_seconds: int
    max_items: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    at: datetime


class DigestJoined(BaseModel):
    """Where the run went: ``carrier`` is the run that carries it (itself when it opened
    the window), ``closes_at`` when that window closes."""

    carrier: uuid.UUID
    closes_at: datetime
    full: bool = False


class DigestClosed(BaseModel):
    """How many triggers the closed window gathered."""

    count: int


class DigestFull(BaseModel):
    """Signal ``digest_full``: the carrier's window reached ``max_items``: close now."""

    carrier: uuid.UUID


DIGEST_FULL_SIGNAL: Final = "digest_full"
STEP_EVENT_SIGNAL: Final = "step_event"


class RecipientRequest(BaseModel):
    """Input of ``flow_recipient``."""

    tenant_id: uuid.UUID
    user_id: str


class RecipientFacts(BaseModel):
    """What ``recipient.<field>`` conditions read (None: the user has no such field)."""

    fields: dict[str, Any] = Field(default_factory=dict)


class StepEvent(BaseModel):
    """Signal ``step_event``: news of a send step's notification (a receipt, a read)."""

    notification_id: uuid.UUID
    status: str


class FlowRunResult(BaseModel):
    """What a run ended as."""

    status: RunStatus
    steps: list[StepState]


# --- conditions ----------------------------------------------------------------------

_MISSING: Final = object()


def lookup(facts: dict[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` of ``facts``, or ``_MISSING``."""
    value: Any = facts
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def step_key(step: dict[str, Any], data: dict[str, Any]) -> str:
    """A digest's or throttle's ``key`` read from the trigger's data: the same text in
    every process (a missing field is ``""``; a long value is hashed to fit its column)."""
    if not step.get("key"):
        return ""
    value = lookup({"data": data}, step["key"])
    if isinstance(value, str):
        key = value
    elif isinstance(value, int | float | bool | list | dict):
        key = json.dumps(value, sort_keys=True)
    else:
        return ""
    if len(key) > 200:
        key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


def first_digest(job: FlowRunInput) -> DigestJoin | None:
    """The join of a run whose first step is a digest, at its trigger's time: made when
    the run is started, so every trigger of the window has joined before the window
    closes, however late a worker reaches the run (the run's own join answers the
    same)."""
    if not job.steps or job.steps[0]["type"] != "digest":
        return None
    step = job.steps[0]
    return DigestJoin(
        run=job.run,
        step_id=step["id"],
        key=step_key(step, job.data),
        window_seconds=step["window_seconds"],
        max_items=step.get("max_items"),
        data=job.data,
        at=job.run.created_at,
    )


def holds(condition: dict[str, Any], facts: dict[str, Any]) -> bool:
    """Whether a stored condition holds over ``facts`` (``data``, ``recipient``,
    ``steps``). A comparison of values that cannot be compared does not hold."""
    if "all" in condition:
        return all(holds(part, facts) for part in condition["all"])
    if "any" in condition:
        return any(holds(part, facts) for part in condition["any"])
    if "not" in condition:
        return not holds(condition["not"], facts)
    value = lookup(facts, condition["path"])
    expected = condition.get("value")
    match condition["op"]:
        case "exists":
            present = value is not _MISSING and value is not None
            return present if expected is None or expected is True else not present
        case "eq":
            return value is not _MISSING and value == expected
        case "ne":
            return value is _MISSING or value != expected
        case "in":
            return value is not _MISSING and isinstance(expected, list) and value in expected
        case "gt" | "lt" as op:
            if value is _MISSING or isinstance(value, bool) or isinstance(expected, bool):
                return False
            try:
                return bool(value > expected if op == "gt" else value < expected)
            except TypeError:
                return False
    return False


def condition_paths(condition: dict[str, Any]) -> list[str]:
    """Every path a stored condition reads."""
    if "all" in condition or "any" in condition:
        return [
            path
            for part in condition.get("all", condition.get("any", []))
            for path in condition_paths(part)
        ]
    if "not" in condition:
        return condition_paths(condition["not"])
    return [condition["path"]]


# --- topic triggers ----------------------------------------------------------------------

FAN_OUT_WORKFLOW: Final = "FlowFanOut"
# Subscribers started per page (one activity), and pages per run before continuing as
# new (the history stays small however large the topic).
FAN_OUT_PAGE: Final = 500


def fan_out_workflow_id(trigger_id: uuid.UUID | str) -> str:
    """``flow-trigger-<uuid>``: a topic trigger's fan-out (the same trigger starts it once)."""
    return f"flow-trigger-{trigger_id}"


class FanOutInput(BaseModel):
    """Input of ``FlowFanOut``: start one run per subscriber of ``topic``, page by page
    in user id order, from after ``after``. ``template`` is every run's input without its
    run identity."""

    template: FlowRunInput
    topic: str
    after: str | None = None
    started: int = 0
    page_size: int = FAN_OUT_PAGE


class FanOutPage(BaseModel):
    """Input of ``fan_out_flow_page``: the next ``limit`` subscribers after ``after``."""

    template: FlowRunInput
    topic: str
    after: str | None = None
    limit: int


class FanOutResult(BaseModel):
    """What a page did: runs started (new ones), the last subscriber, whether it was the
    topic's last page."""

    started: int
    last_user_id: str | None = None
    exhausted: bool


class FanOutState(BaseModel):
    """What ``FlowFanOut`` ended with."""

    started: int
