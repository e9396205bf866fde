"""Flows: save a version (checked, its send steps' templates included), read and list
them, trigger runs, read and list runs, cancel runs by ``cancellation_key``.

The REST routes use these functions; a run itself is ``workflows/flow.py``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, RowMapping, and_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.errors import not_found, unprocessable
from api.pagination import NEWEST_FIRST, decode_cursor, encode_cursor
from api.schemas.flows import (
    FlowOut,
    FlowPage,
    FlowRunOut,
    FlowRunPage,
    RunRef,
    TriggerAccepted,
    TriggerIn,
)
from herald import submission
from herald.contracts import NotificationRequest
from herald.db import FlowRun
from herald.flows import store
from herald.flows.definition import FlowDefinition, FlowInvalid, parse_flow
from herald.flows.models import (
    FanOutInput,
    FlowRunInput,
    RunIdentity,
    RunStatus,
    StepState,
    run_for,
    run_workflow_id,
    trigger_id_for,
)
from herald.settings import Settings
from herald.tenants import TenantContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlowBackends:
    """What triggers and cancels need: the API's ``Backends`` has all of it."""

    engine: AsyncEngine
    temporal: Client
    settings: Settings


# --- definitions -----------------------------------------------------------------------


def _flow_out(row: RowMapping) -> FlowOut:
    return FlowOut(
        key=row["key"],
        version=row["version"],
        name=row["name"],
        category=row["category"],
        steps=row["steps"],
        created_at=row["created_at"],
    )


async def _check_templates(engine: AsyncEngine, tenant_id: uuid.UUID, flow: FlowDefinition) -> None:
    """422 naming the first send step whose template has no version for its channel (or
    one of its fallbacks)."""
    sends = flow.sends()
    requests = [
        # Only the template and channels are read: a stand-in for any recipient.
        NotificationRequest.model_construct(
            channel=step.channel, user_id="", template=step.template, fallback=step.fallback
        )
        for _, step in sends
    ]
    missing = await submission.missing_templates_many(engine, tenant_id, requests)
    for (path, step), absent in zip(sends, missing, strict=True):
        if absent:
            channels = ", ".join(channel.value for channel in absent)
            field = "template" if step.channel in absent else "fallback"
            raise unprocessable(
                f"{path}.{field}",
                f"no {channels} template {step.template!r} (no {channels} version of it); "
                "create it first",
            )


async def save_flow(
    engine: AsyncEngine, tenant: TenantContext, key: str, payload: Any
) -> tuple[FlowOut, bool]:
    """Store a new version of the flow; (the version, whether it is the first)."""
    try:
        flow = parse_flow(payload)
    except FlowInvalid as err:
        raise unprocessable(err.path, err.message) from None
    await _check_templates(engine, tenant.id, flow)
    row = await store.save_flow(engine, tenant.id, key, flow)
    return _flow_out(row), row["version"] == 1


async def get_flow(
    engine: AsyncEngine, tenant: TenantContext, key: str, version: int | None
) -> FlowOut:
    """The latest version, or version ``version``; 404 if there is none."""
    row = await store.get_flow(engine, tenant.id, key, version)
    if row is None:
        raise not_found(f"flow {key!r}" + (f" version {version}" if version else ""))
    return _flow_out(row)


async def list_flows(
    engine: AsyncEngine, tenant: TenantContext, *, limit: int, cursor: str | None
) -> FlowPage:
    """Each flow's latest version, by key."""
    after = decode_cursor(cursor, str)[0] if cursor is not None else None
    rows = await store.list_flows(engine, tenant.id, after=after, limit=limit + 1)
    items = [_flow_out(row) for row in rows[:limit]]
    more = len(rows) > limit
    return FlowPage(items=items, next_cursor=encode_cursor(items[-1].key) if more else None)


# --- triggers --------------------------------------------------------------------------


async def trigger(
    backends: FlowBackends,
    tenant: TenantContext,
    key: str,
    body: TriggerIn,
    *,
    request_id: str | None = None,
) -> TriggerAccepted:
    """Start one run of the flow's latest version per recipient, each durably, before
    answering. The run ids derive from the trigger (the idempotency key's, or a new one)
    and the recipient, so the same idempotency key starts nothing twice. A topic's
    subscribers are started by a ``FlowFanOut`` page by page; the answer then says where
    to follow them (``status_url``)."""
    row = await store.get_flow(backends.engine, tenant.id, key)
    if row is None:
        raise not_found(f"flow {key!r}")
    trigger_id = trigger_id_for(tenant.id, tenant.test, key, body.idempotency_key)
    template = FlowRunInput(
        run=RunIdentity(
            run_id=trigger_id,  # each run's is derived from the trigger and its recipient
            tenant_id=tenant.id,
            test=tenant.test,
            flow_key=key,
            version=row["version"],
            user_id="",
            trigger_id=trigger_id,
            cancellation_key=body.cancellation_key,
            created_at=datetime.now(UTC),
        ),
        tenant=tenant.name,
        category=row["category"],
        steps=row["steps"],
        data=body.data,
        request_id=request_id,
    )
    if body.topic is not None:
        return await _trigger_topic(backends, tenant, template, body.topic)
    assert body.recipients is not None  # the schema asks for one of the two
    jobs = [run_for(template, user_id) for user_id in dict.fromkeys(body.recipients)]
    bound = asyncio.Semaphore(backends.settings.batch_start_concurrency)

    async def start(job: FlowRunInput) -> bool:
        async with bound:
            return await store.start_run(backends.temporal, backends.settings, backends.engine, job)

    started = await asyncio.gather(*(start(job) for job in jobs), return_exceptions=True)
    # Runs started before (the same idempotency key) keep the row they have.
    await store.write_runs(
        backends.engine, [job.run for job, new in zip(jobs, started, strict=True) if new is True]
    )
    failed = [outcome for outcome in started if isinstance(outcome, BaseException)]
    if failed:
        # Those started stay started; the same idempotency key starts only the others.
        raise failed[0]
    log.info(
        "flow triggered",
        extra={
            "tenant": tenant.name,
            "test": tenant.test,
            "flow": key,
            "trigger_id": str(trigger_id),
            "runs": len(jobs),
            "new": sum(outcome is True for outcome in started),
        },
    )
    return TriggerAccepted(
        trigger_id=trigger_id,
        runs=[RunRef(user_id=job.run.user_id, run_id=job.run.run_id) for job in jobs],
    )


async def _trigger_topic(
    backends: FlowBackends, tenant: TenantContext, template: FlowRunInput, topic: str
) -> TriggerAccepted:
    """Durably start the fan-out over the topic's subscribers (once per trigger)."""
    if not await store.topic_exists(backends.engine, tenant.id, topic):
        raise unprocessable("topic", f"no topic {topic!r}; create it with PUT /v1/topics/{topic}")
    trigger_id = template.run.trigger_id
    new = await store.start_fan_out(
        backends.temporal, backends.settings, FanOutInput(template=template, topic=topic)
    )
    log.info(
        "flow triggered for a topic",
        extra={
            "tenant": tenant.name,
            "test": tenant.test,
            "flow": template.run.flow_key,
            "trigger_id": str(trigger_id),
            "new": new,
        },
    )
    return TriggerAccepted(
        trigger_id=trigger_id, status_url=f"/v1/flow-runs?{urlencode({'trigger_id': trigger_id})}"
    )


# --- runs ------------------------------------------------------------------------------

_RUNS = FlowRun.__table__


def _visible_to(tenant: TenantContext) -> ColumnElement[bool]:
    """The tenant's runs a key may see: a test key sees only test runs."""
    mine = FlowRun.tenant_id == tenant.id
    return and_(mine, FlowRun.test.is_(True)) if tenant.test else mine


def _run_out(row: RowMapping) -> FlowRunOut:
    return FlowRunOut(
        id=row["id"],
        flow=row["flow_key"],
        version=row["version"],
        user_id=row["user_id"],
        status=RunStatus(row["status"]),
        test=row["test"],
        trigger_id=row["trigger_id"],
        cancellation_key=row["cancellation_key"],
        steps=[StepState.model_validate(step) for step in row["steps"] or []],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def get_run(engine: AsyncEngine, tenant: TenantContext, run_id: uuid.UUID) -> FlowRunOut:
    """A run and its steps; 404 for another tenant's (or, to a test key, a live one)."""
    query = select(_RUNS).where(FlowRun.id == run_id, _visible_to(tenant))
    async with engine.connect() as conn:
        row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise not_found(f"flow run {run_id}")
    return _run_out(row)


async def list_runs(
    engine: AsyncEngine,
    tenant: TenantContext,
    *,
    flow: str | None = None,
    user_id: str | None = None,
    status: RunStatus | None = None,
    trigger_id: uuid.UUID | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> FlowRunPage:
    """The tenant's runs, newest first, filtered."""
    query = select(_RUNS).where(_visible_to(tenant))
    if flow is not None:
        query = query.where(FlowRun.flow_key == flow)
    if user_id is not None:
        query = query.where(FlowRun.user_id == user_id)
    if status is not None:
        query = query.where(FlowRun.status == status.value)
    if trigger_id is not None:
        query = query.where(FlowRun.trigger_id == trigger_id)
    if cursor is not None:
        query = query.where(
            tuple_(FlowRun.created_at, FlowRun.id) < tuple_(*decode_cursor(cursor, *NEWEST_FIRST))
        )
    query = query.order_by(FlowRun.created_at.desc(), FlowRun.id.desc()).limit(limit + 1)
    async with engine.connect() as conn:
        rows = list((await conn.execute(query)).mappings())
    items = [_run_out(row) for row in rows[:limit]]
    more = len(rows) > limit
    return FlowRunPage(
        items=items, next_cursor=encode_cursor(items[-1].created_at, items[-1].id) if more else None
    )


async def cancel_runs(backends: FlowBackends, tenant: TenantContext, cancellation_key: str) -> int:
    """Ask every running run of the tenant (in the key's test mode) with the key to stop:
    its pending delay or wait ends, and a notification it started that has not been sent
    is cancelled. How many were asked."""
    run_ids = await store.running_with_key(
        backends.engine, tenant.id, tenant.test, cancellation_key
    )
    bound = asyncio.Semaphore(backends.settings.batch_start_concurrency)

    async def cancel(run_id: uuid.UUID) -> bool:
        async with bound:
            try:
                await backends.temporal.get_workflow_handle(run_workflow_id(run_id)).cancel()
            except RPCError as err:
                if err.status is RPCStatusCode.NOT_FOUND:
                    return False  # it ended meanwhile
                raise
            return True

    return sum(await asyncio.gather(*(cancel(run_id) for run_id in run_ids)))
