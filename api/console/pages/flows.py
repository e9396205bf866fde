"""Flows: the tenant's flows (latest version, category), one flow's page (its versions,
and a version's steps as a readable nested list), its runs with filters, and one run's
page: each step's status and outcome and one timeline joining the run's step
transitions with the status events of the notifications its send steps started.

Runs follow the REST rules (``api/services/flows.py``): a test key sees test runs only,
another tenant's run is not found. The run pages live under ``/flows/-/runs`` so that no
flow key (which may well be "runs") loses its page to them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from api.console.rendering import render
from api.console.session import Console, ConsoleReadDep, ConsoleReadOrSendDep
from api.errors import ApiError, not_found
from api.schemas.flows import FlowOut, FlowRunOut
from api.services import flows
from api.services.notifications import visible_to
from herald.contracts import has_nul
from herald.db import Flow, Notification, NotificationEvent
from herald.flows.models import RunStatus, StepState, run_workflow_id
from herald.settings import Settings

router = APIRouter(prefix="/flows")
PAGE_SIZE = 50
RUNS = "/-/runs"
# A flow's versions shown on its page, newest first.
VERSIONS_SHOWN = 100

Cursor = Annotated[str, Query(max_length=512)]


# --- steps in words --------------------------------------------------------------------


def duration(seconds: float) -> str:
    """``3600`` → ``1h``, ``90`` → ``1m 30s``, ``93600`` → ``1d 2h``."""
    left = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return " ".join(parts) or f"{seconds}s"


def _value(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, list):
        return ", ".join(_value(item) for item in value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_OPS = {
    "eq": "is",
    "ne": "is not",
    "in": "is one of",
    "gt": "is greater than",
    "lt": "is less than",
}


def condition_words(condition: Any, nested: bool = False) -> str:
    """A branch's condition as a sentence: ``data.plan is 'pro' and recipient.phone
    exists``; combinations inside combinations are parenthesised."""
    if not isinstance(condition, dict):
        return "(unreadable condition)"
    if "all" in condition or "any" in condition:
        joiner = " and " if "all" in condition else " or "
        parts = condition.get("all") or condition.get("any") or []
        text = joiner.join(condition_words(part, nested=True) for part in parts)
        return f"({text})" if nested and len(parts) > 1 else text
    if "not" in condition:
        return f"not ({condition_words(condition['not'])})"
    path, op = condition.get("path", "?"), condition.get("op", "?")
    if op == "exists":
        return f"{path} exists"
    return f"{path} {_OPS.get(op, op)} {_value(condition.get('value'))}"


def step_words(step: dict[str, Any]) -> str:
    """One step in words: ``send email 'welcome' (fallback sms)``, ``wait up to 1h for
    delivered of step 'first'``, ``if data.plan is 'pro'``..."""
    kind = step.get("type")
    if kind == "send":
        words = f"send {step.get('channel')} {_value(step.get('template'))}"
        if step.get("locale"):
            words += f" in {step['locale']}"
        if step.get("fallback"):
            words += f" (fallback {', '.join(step['fallback'])}"
            if step.get("confirm_within_seconds"):
                words += f" unless confirmed within {duration(step['confirm_within_seconds'])}"
            words += ")"
        return words
    if kind == "delay":
        if step.get("until"):
            return f"delay until the time in {step['until']}"
        return f"delay {duration(step.get('seconds') or 0)}"
    if kind == "wait":
        return (
            f"wait up to {duration(step.get('timeout_seconds') or 0)} for {step.get('for')} "
            f"of step {_value(step.get('step'))}"
        )
    if kind == "branch":
        return f"if {condition_words(step.get('if'))}"
    if kind == "digest":
        words = f"collect triggers for {duration(step.get('window_seconds') or 0)} into one run"
        if step.get("key"):
            words += f", one per {step['key']}"
        if step.get("max_items"):
            words += f", at most {step['max_items']} items"
        return words
    if kind == "throttle":
        words = f"at most {step.get('limit')} runs per {duration(step.get('window_seconds') or 0)}"
        if step.get("key"):
            words += f" per {step['key']}"
        return words + "; past that the run ends"
    return f"{kind} step"


@dataclass
class StepLine:
    """One step of the nested list: its id, type and words, and a branch's two arms."""

    id: str
    type: str
    words: str
    arms: list[tuple[str, list[StepLine]]] = field(default_factory=list)


def step_lines(steps: list[dict[str, Any]]) -> list[StepLine]:
    """The stored steps as the flow page's nested list."""
    lines = []
    for step in steps:
        line = StepLine(id=str(step.get("id")), type=str(step.get("type")), words=step_words(step))
        if step.get("type") == "branch":
            line.arms.append(("then", step_lines(step.get("then") or [])))
            if step.get("else"):
                line.arms.append(("otherwise", step_lines(step["else"])))
        lines.append(line)
    return lines


# --- flows -----------------------------------------------------------------------------


def _error(request: Request, console: Console, err: ApiError) -> Response:
    return render(
        request,
        "error.html",
        console,
        status_code=err.status_code,
        title="Cannot show this page",
        message=err.message,
    )


@router.get("", response_class=HTMLResponse)
async def list_page(request: Request, console: ConsoleReadDep, cursor: Cursor = "") -> Response:
    """Every flow by key: its latest version and category."""
    try:
        page = await flows.list_flows(
            console.backends.engine, console.tenant, limit=PAGE_SIZE, cursor=cursor or None
        )
    except ApiError as err:  # a cursor this console did not make
        return _error(request, console, err)
    return render(request, "flows/list.html", console, page=page)


async def _versions(console: Console, key: str) -> list[dict[str, Any]]:
    query = (
        select(Flow.version, Flow.name, Flow.category, Flow.created_at)
        .where(Flow.tenant_id == console.tenant.id, Flow.key == key)
        .order_by(Flow.version.desc())
        .limit(VERSIONS_SHOWN)
    )
    async with console.backends.engine.connect() as conn:
        return [dict(row) for row in (await conn.execute(query)).mappings()]


def _flow_key(key: str) -> str:
    if not key or len(key) > 128 or has_nul(key):
        raise not_found(f"flow {key[:128]!r}")
    return key


@router.get("/{key}", response_class=HTMLResponse)
async def flow_page(
    request: Request,
    key: str,
    console: ConsoleReadDep,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> Response:
    """One flow: its versions, and the steps of the chosen one (the latest by default)."""
    flow: FlowOut = await flows.get_flow(
        console.backends.engine, console.tenant, _flow_key(key), version
    )
    return render(
        request,
        "flows/detail.html",
        console,
        flow=flow,
        lines=step_lines(flow.steps),
        versions=await _versions(console, key),
        runs_url=f"/console/flows{RUNS}?{urlencode({'flow': key})}",
    )


# --- runs ------------------------------------------------------------------------------


class RunFilters:
    """The runs list's filters, as query parameters (empty means any)."""

    def __init__(
        self,
        flow: Annotated[str, Query(max_length=128)] = "",
        user_id: Annotated[str, Query(max_length=128)] = "",
        status: Annotated[str, Query(max_length=16)] = "",
        cursor: Cursor = "",
    ) -> None:
        if has_nul(flow) or has_nul(user_id):
            raise ApiError(422, "flow, user_id: may not contain the NUL character (\\u0000)")
        self.flow = flow.strip()
        self.user_id = user_id.strip()
        self.status = status if status in RunStatus.__members__ else ""
        self.cursor = cursor

    def query(self, **changes: str) -> str:
        """These filters as a query string, with ``changes`` applied, empty ones left out."""
        values = {
            "flow": self.flow,
            "user_id": self.user_id,
            "status": self.status,
            "cursor": self.cursor,
            **changes,
        }
        return urlencode({name: value for name, value in values.items() if value})


@router.get(RUNS, response_class=HTMLResponse)
async def runs_page(
    request: Request, console: ConsoleReadOrSendDep, filters: Annotated[RunFilters, Depends()]
) -> Response:
    """The tenant's runs, newest first, by flow, recipient and status."""
    try:
        page = await flows.list_runs(
            console.backends.engine,
            console.tenant,
            flow=filters.flow or None,
            user_id=filters.user_id or None,
            status=RunStatus(filters.status) if filters.status else None,
            limit=PAGE_SIZE,
            cursor=filters.cursor or None,
        )
    except ApiError as err:  # a cursor this console did not make
        return _error(request, console, err)
    return render(
        request,
        "flows/runs.html",
        console,
        page=page,
        filters=filters,
        run_statuses=[status.value for status in RunStatus],
    )


@dataclass(frozen=True)
class Moment:
    """One line of a run's timeline: a step's transition or a notification's event."""

    at: datetime
    kind: str  # "step" or "notification"
    step_id: str
    status: str
    detail: str | None = None
    notification_id: uuid.UUID | None = None
    attempt: int = 0
    provider: str | None = None


def _step_moments(steps: list[StepState]) -> list[Moment]:
    moments = []
    for step in steps:
        if step.started_at is not None:
            moments.append(Moment(step.started_at, "step", step.id, "started", step.type))
        if step.ended_at is not None:
            moments.append(Moment(step.ended_at, "step", step.id, step.status.value, step.outcome))
    return moments


async def _notification_moments(console: Console, steps: list[StepState]) -> list[Moment]:
    """The status events of the run's notifications (those the key may see), with the
    step each belongs to."""
    step_of = {step.notification_id: step.id for step in steps if step.notification_id}
    if not step_of:
        return []
    query = (
        select(
            NotificationEvent.notification_id,
            NotificationEvent.status,
            NotificationEvent.at,
            NotificationEvent.detail,
            NotificationEvent.attempt,
            NotificationEvent.provider,
        )
        .join(Notification, Notification.id == NotificationEvent.notification_id)
        .where(NotificationEvent.notification_id.in_(list(step_of)), visible_to(console.tenant))
        .order_by(NotificationEvent.at, NotificationEvent.id)
    )
    async with console.backends.engine.connect() as conn:
        rows = list((await conn.execute(query)).mappings())
    return [
        Moment(
            at=row["at"],
            kind="notification",
            step_id=step_of[row["notification_id"]],
            status=row["status"],
            detail=row["detail"],
            notification_id=row["notification_id"],
            attempt=row["attempt"],
            provider=row["provider"],
        )
        for row in rows
    ]


def temporal_ui_url(settings: Settings, run_id: uuid.UUID) -> str:
    """Where the run's workflow is in the Temporal UI."""
    return (
        f"{settings.temporal_ui_url.rstrip('/')}/namespaces/"
        f"{quote(settings.temporal_namespace)}/workflows/{run_workflow_id(run_id)}"
    )


def _run_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as err:
        raise not_found(f"flow run {value[:64]}") from err


@router.get(RUNS + "/{run_id}", response_class=HTMLResponse)
async def run_page(request: Request, run_id: str, console: ConsoleReadOrSendDep) -> Response:
    """One run: its steps and one timeline of step transitions and notification events."""
    run: FlowRunOut = await flows.get_run(console.backends.engine, console.tenant, _run_id(run_id))
    moments = _step_moments(run.steps) + await _notification_moments(console, run.steps)
    # Stable: at one instant a step's own transition comes before its notification's.
    moments.sort(key=lambda moment: (moment.at, moment.kind != "step"))
    return render(
        request,
        "flows/run.html",
        console,
        run=run,
        timeline=moments,
        temporal_url=temporal_ui_url(console.backends.settings, run.id),
    )
