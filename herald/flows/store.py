"""Flows in PostgreSQL and Temporal: versions, run rows, throttle counts, and the one
place a ``FlowRun`` is started. Shared by the API, the core worker's activities and the
CLI."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    MetaData,
    RowMapping,
    Table,
    Text,
    Uuid,
    and_,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, distinct_on, insert
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from herald import search
from herald.db import (
    Flow,
    FlowRun,
    FlowThrottleHit,
    Notification,
    NotificationEvent,
    Topic,
    TopicSubscriber,
    User,
)
from herald.flows.definition import FlowDefinition
from herald.flows.models import (
    FAN_OUT_WORKFLOW,
    WORKFLOW,
    DigestJoin,
    DigestJoined,
    FanOutInput,
    FlowRunInput,
    NotificationProgress,
    RecipientFacts,
    RunIdentity,
    RunProgress,
    RunStatus,
    ThrottleRequest,
    fan_out_workflow_id,
    first_digest,
)
from herald.settings import Settings
from herald.temporal import core_task_queue

log = logging.getLogger(__name__)

_FLOWS = Flow.__table__
_RUNS = FlowRun.__table__
# Two saves of one key racing for the next version: the loser tries again this often.
_SAVE_ATTEMPTS = 5


# --- definitions -----------------------------------------------------------------------


async def save_flow(
    engine: AsyncEngine, tenant_id: uuid.UUID, key: str, flow: FlowDefinition
) -> RowMapping:
    """Store ``flow`` as the key's next version (1 for a new key); its row."""
    next_version = (
        select(func.coalesce(func.max(Flow.version), 0) + 1)
        .where(Flow.tenant_id == tenant_id, Flow.key == key)
        .scalar_subquery()
    )
    statement = (
        insert(Flow)
        .values(
            tenant_id=tenant_id,
            key=key,
            version=next_version,
            name=flow.name,
            category=flow.category,
            steps=flow.stored(),
        )
        .returning(*_FLOWS.c)
    )
    for attempt in range(_SAVE_ATTEMPTS):
        try:
            async with engine.begin() as conn:
                return (await conn.execute(statement)).mappings().one()
        except IntegrityError:
            if attempt == _SAVE_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


async def get_flow(
    engine: AsyncEngine, tenant_id: uuid.UUID, key: str, version: int | None = None
) -> RowMapping | None:
    """One version of a flow (the latest without ``version``), or None."""
    query = select(_FLOWS).where(Flow.tenant_id == tenant_id, Flow.key == key)
    if version is not None:
        query = query.where(Flow.version == version)
    query = query.order_by(Flow.version.desc()).limit(1)
    async with engine.connect() as conn:
        return (await conn.execute(query)).mappings().first()


async def list_flows(
    engine: AsyncEngine, tenant_id: uuid.UUID, *, after: str | None, limit: int
) -> list[RowMapping]:
    """The latest version of each flow, by key, after the key ``after``."""
    query = select(_FLOWS).where(Flow.tenant_id == tenant_id)
    if after is not None:
        query = query.where(Flow.key > after)
    query = query.ext(distinct_on(Flow.key)).order_by(Flow.key, Flow.version.desc()).limit(limit)
    async with engine.connect() as conn:
        return list((await conn.execute(query)).mappings())


# --- runs ------------------------------------------------------------------------------


def _row_values(run: RunIdentity) -> dict[str, Any]:
    return {
        "id": run.run_id,
        "tenant_id": run.tenant_id,
        "test": run.test,
        "flow_key": run.flow_key,
        "version": run.version,
        "user_id": run.user_id,
        "trigger_id": run.trigger_id,
        "cancellation_key": run.cancellation_key,
        "created_at": run.created_at,
        "updated_at": run.created_at,
    }


async def write_runs(engine: AsyncEngine, runs: Sequence[RunIdentity]) -> None:
    """The rows of new runs, ``running`` (those already there are left as they are): the
    API right after the starts, and each run as its first step."""
    if not runs:
        return
    rows = [_row_values(run) | {"status": RunStatus.running.value, "steps": []} for run in runs]
    async with engine.begin() as conn:
        await conn.execute(insert(FlowRun).values(rows).on_conflict_do_nothing())


async def record_progress(engine: AsyncEngine, progress: RunProgress) -> None:
    """The run's row as the run sees it now (written whole, so a retry is harmless)."""
    steps = [step.model_dump(mode="json", exclude_none=True) for step in progress.steps]
    statement = insert(FlowRun).values(
        _row_values(progress.run) | {"status": progress.status.value, "steps": steps}
    )
    statement = statement.on_conflict_do_update(
        index_elements=[FlowRun.id],
        set_={"status": progress.status.value, "steps": steps, "updated_at": func.now()},
    )
    async with engine.begin() as conn:
        await conn.execute(statement)


async def running_with_key(
    engine: AsyncEngine, tenant_id: uuid.UUID, test: bool, cancellation_key: str
) -> list[uuid.UUID]:
    """The ids of the tenant's running runs (of this test mode) with the key."""
    query = select(FlowRun.id).where(
        FlowRun.tenant_id == tenant_id,
        FlowRun.cancellation_key == cancellation_key,
        FlowRun.status == RunStatus.running.value,
        FlowRun.test.is_(test),
    )
    async with engine.connect() as conn:
        return list((await conn.execute(query)).scalars())


async def start_run(
    client: Client, settings: Settings, engine: AsyncEngine, job: FlowRunInput
) -> bool:
    """Durably start a run; False if this run id was started before (the one place a
    ``FlowRun`` is started). A run whose first step is a digest joins its window now,
    at its trigger's time (``first_digest``)."""
    started = await _start_workflow(client, settings, job)
    join = first_digest(job)
    if join is not None:
        try:
            await join_digest(engine, join)
        except (SQLAlchemyError, OSError) as err:
            # The run joins by itself when it reaches the step, with the same answer.
            log.warning("digest not joined at the trigger", extra={"error": repr(err)})
    return started


async def _start_workflow(client: Client, settings: Settings, job: FlowRunInput) -> bool:
    try:
        await client.start_workflow(
            WORKFLOW,
            job,
            id=job.run.workflow_id,
            task_queue=core_task_queue(settings),
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(search.TENANT, job.tenant),
                    SearchAttributePair(search.RECIPIENT, job.run.user_id),
                    SearchAttributePair(search.FLOW, job.run.flow_key),
                    SearchAttributePair(search.FLOW_STATE, RunStatus.running.value),
                ]
            ),
            static_summary=(
                f"flow {job.run.flow_key} v{job.run.version} · tenant {job.tenant}"
                + (" · test" if job.run.test else "")
            ),
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


# --- what a run reads and counts -------------------------------------------------------


async def notification_progress(
    engine: AsyncEngine, notification_id: uuid.UUID
) -> NotificationProgress:
    """A send step's notification: its status, and whether it was ever delivered or read."""
    reached = (
        select(NotificationEvent.status)
        .where(
            NotificationEvent.notification_id == notification_id,
            NotificationEvent.status.in_(("delivered", "read")),
        )
        .distinct()
    )
    async with engine.connect() as conn:
        status = (
            await conn.execute(
                select(Notification.status).where(Notification.id == notification_id)
            )
        ).scalar_one_or_none()
        seen = set((await conn.execute(reached)).scalars())
    return NotificationProgress(
        notification_id=notification_id,
        status=status,
        delivered="delivered" in seen or status == "delivered",
        read="read" in seen,
    )


async def recipient_facts(
    engine: AsyncEngine, tenant_id: uuid.UUID, user_id: str
) -> RecipientFacts:
    """What ``recipient.<field>`` conditions may read of the user (nothing if unknown)."""
    query = select(User.id, User.email, User.phone, User.locale, User.timezone).where(
        User.tenant_id == tenant_id, User.id == user_id
    )
    async with engine.connect() as conn:
        row = (await conn.execute(query)).mappings().first()
    return RecipientFacts(fields=dict(row) if row is not None else {})


_LOCK_WINDOW = text("SELECT pg_advisory_xact_lock(hashtextextended(:scope, 0))")


async def throttle(engine: AsyncEngine, request: ThrottleRequest) -> bool:
    """Whether the run is within the limit of its recipient, flow and key around
    ``request.at`` (its trigger's time). Runs of one window are counted one at a time (a lock per
    recipient, flow and key), and a run's answer is kept, so a retried step answers the
    same and no run is ever counted twice or lost."""
    run = request.run
    hit = FlowThrottleHit.__table__
    scope = f"{run.tenant_id}:{run.user_id}:{run.flow_key}:{request.key}"
    async with engine.begin() as conn:
        await conn.execute(_LOCK_WINDOW, {"scope": scope})
        known = (
            await conn.execute(
                select(FlowThrottleHit.admitted).where(
                    FlowThrottleHit.run_id == run.run_id, FlowThrottleHit.step_id == request.step_id
                )
            )
        ).scalar_one_or_none()
        if known is not None:
            return bool(known)
        admitted_so_far = (
            await conn.execute(
                select(func.count()).where(
                    and_(
                        hit.c.tenant_id == run.tenant_id,
                        hit.c.user_id == run.user_id,
                        hit.c.flow_key == run.flow_key,
                        hit.c.key == request.key,
                        hit.c.admitted.is_(True),
                        # Admissions less than a window before or after: a run reached
                        # late (its worker was down) still counts against later ones, so
                        # no span of one window ever holds more than ``limit``.
                        hit.c.at > request.at - timedelta(seconds=request.window_seconds),
                        hit.c.at < request.at + timedelta(seconds=request.window_seconds),
                    )
                )
            )
        ).scalar_one()
        admitted = admitted_so_far < request.limit
        await conn.execute(
            insert(FlowThrottleHit).values(
                run_id=run.run_id,
                step_id=request.step_id,
                tenant_id=run.tenant_id,
                user_id=run.user_id,
                flow_key=run.flow_key,
                key=request.key,
                admitted=admitted,
                at=request.at,
            )
        )
    return admitted


# --- which run a notification belongs to; digest members ---------------------------------

_LINKS_METADATA = MetaData()
# Migration 0014's tables, read and written only here.
STEP_NOTIFICATIONS = Table(
    "flow_step_notifications",
    _LINKS_METADATA,
    Column("notification_id", Uuid, primary_key=True),
    Column("run_id", Uuid, nullable=False),
    Column("tenant_id", Uuid, nullable=False),
)
DIGEST_ITEMS = Table(
    "flow_digest_items",
    _LINKS_METADATA,
    Column("carrier_id", Uuid, primary_key=True),
    Column("run_id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("scope", Text, nullable=False),
    Column("data", JSONB, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("closed", Boolean, nullable=False, server_default="false"),
)


async def link_notification(
    engine: AsyncEngine, notification_id: uuid.UUID, run: RunIdentity
) -> None:
    """Remember that a send step's notification is the run's (before it is accepted, so a
    receipt for it always finds the run)."""
    statement = (
        insert(STEP_NOTIFICATIONS)
        .values(notification_id=notification_id, run_id=run.run_id, tenant_id=run.tenant_id)
        .on_conflict_do_nothing()
    )
    async with engine.begin() as conn:
        await conn.execute(statement)


async def run_of_notification(engine: AsyncEngine, notification_id: uuid.UUID) -> uuid.UUID | None:
    """The run whose send step made the notification, or None."""
    query = select(STEP_NOTIFICATIONS.c.run_id).where(
        STEP_NOTIFICATIONS.c.notification_id == notification_id
    )
    async with engine.connect() as conn:
        found: uuid.UUID | None = (await conn.execute(query)).scalar_one_or_none()
    return found


def _digest_scope(request: DigestJoin) -> str:
    run = request.run
    mode = "test" if run.test else "live"
    parts = (mode, run.user_id, run.flow_key, request.step_id, request.key)
    return "\x1f".join(parts)


async def join_digest(engine: AsyncEngine, request: DigestJoin) -> DigestJoined:
    """Put the run into the open window of its recipient, flow, step and key, or open one
    that it carries. Joins of one scope are serialized (an advisory lock), and a run's
    answer is kept, so a retried step answers the same. The carrier's own row says when
    its window opened and whether it closed (full, or its carrier read its members)."""
    run = request.run
    items = DIGEST_ITEMS
    scope = _digest_scope(request)
    async with engine.begin() as conn:
        await conn.execute(_LOCK_WINDOW, {"scope": f"digest:{run.tenant_id}:{scope}"})
        carrier: uuid.UUID | None = (
            await conn.execute(select(items.c.carrier_id).where(items.c.run_id == run.run_id))
        ).scalar_one_or_none()
        if carrier is None:
            carrier = await _open_window(conn, request, scope) or run.run_id
            await conn.execute(
                insert(items).values(
                    carrier_id=carrier,
                    run_id=run.run_id,
                    tenant_id=run.tenant_id,
                    scope=scope,
                    data=request.data,
                    at=request.at,
                )
            )
            if request.max_items is not None:
                members = await _members(conn, carrier)
                if members >= request.max_items:
                    await _close(conn, carrier)
        own = (
            await conn.execute(
                select(items.c.at, items.c.closed).where(
                    items.c.carrier_id == carrier, items.c.run_id == carrier
                )
            )
        ).one()
    closes_at = own.at + timedelta(seconds=request.window_seconds)
    return DigestJoined(carrier=carrier, closes_at=closes_at, full=bool(own.closed))


async def _open_window(conn: Any, request: DigestJoin, scope: str) -> uuid.UUID | None:
    """The carrier of the open window the run may join, or None: not closed, and opened
    less than the window's length before the run's trigger, or after it (a run whose
    worker reached the step late, when a later trigger had opened the window already)."""
    items = DIGEST_ITEMS
    window = timedelta(seconds=request.window_seconds)
    query = (
        select(items.c.carrier_id)
        .where(
            items.c.tenant_id == request.run.tenant_id,
            items.c.scope == scope,
            items.c.carrier_id == items.c.run_id,
            items.c.closed.is_(False),
            items.c.at > request.at - window,
            items.c.at < request.at + window,
        )
        .order_by(items.c.at.desc(), items.c.carrier_id)
        .limit(1)
    )
    found: uuid.UUID | None = (await conn.execute(query)).scalar_one_or_none()
    return found


async def _members(conn: Any, carrier: uuid.UUID) -> int:
    items = DIGEST_ITEMS
    query = select(func.count()).where(items.c.carrier_id == carrier)
    return int((await conn.execute(query)).scalar_one())


async def _close(conn: Any, carrier: uuid.UUID) -> None:
    items = DIGEST_ITEMS
    await conn.execute(
        update(items)
        .where(items.c.carrier_id == carrier, items.c.run_id == carrier)
        .values(closed=True)
    )


async def close_digest(engine: AsyncEngine, request: DigestJoin) -> int:
    """Close the window the run carries (no run joins it after this); how many triggers
    it gathered, itself included."""
    carrier = request.run.run_id
    scope = _digest_scope(request)
    async with engine.begin() as conn:
        await conn.execute(_LOCK_WINDOW, {"scope": f"digest:{request.run.tenant_id}:{scope}"})
        await _close(conn, carrier)
        return await _members(conn, carrier)


async def digest_items(engine: AsyncEngine, carrier: uuid.UUID) -> list[dict[str, Any]]:
    """Each gathered trigger's data, oldest first (the carrier's own first)."""
    items = DIGEST_ITEMS
    query = (
        select(items.c.data)
        .where(items.c.carrier_id == carrier)
        .order_by(items.c.at, items.c.run_id != carrier, items.c.run_id)
    )
    async with engine.connect() as conn:
        return list((await conn.execute(query)).scalars())


# --- topic triggers ----------------------------------------------------------------------


async def topic_exists(engine: AsyncEngine, tenant_id: uuid.UUID, topic: str) -> bool:
    """Whether the tenant has the topic."""
    query = select(Topic.key).where(Topic.tenant_id == tenant_id, Topic.key == topic)
    async with engine.connect() as conn:
        return (await conn.execute(query)).first() is not None


async def subscribers_page(
    engine: AsyncEngine, tenant_id: uuid.UUID, topic: str, after: str | None, limit: int
) -> list[str]:
    """The next ``limit`` subscribers of the topic after ``after``, in user id order (the
    primary key's order: a keyset scan)."""
    query = select(TopicSubscriber.user_id).where(
        TopicSubscriber.tenant_id == tenant_id, TopicSubscriber.topic_key == topic
    )
    if after is not None:
        query = query.where(TopicSubscriber.user_id > after)
    query = query.order_by(TopicSubscriber.user_id).limit(limit)
    async with engine.connect() as conn:
        return list((await conn.execute(query)).scalars())


async def start_fan_out(client: Client, settings: Settings, job: FanOutInput) -> bool:
    """Durably start a topic trigger's fan-out; False if this trigger was started before."""
    try:
        await client.start_workflow(
            FAN_OUT_WORKFLOW,
            job,
            id=fan_out_workflow_id(job.template.run.trigger_id),
            task_queue=core_task_queue(settings),
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(search.TENANT, job.template.tenant),
                    SearchAttributePair(search.FLOW, job.template.run.flow_key),
                ]
            ),
            static_summary=(
                f"flow {job.template.run.flow_key} v{job.template.run.version} · topic "
                f"{job.topic} · tenant {job.template.tenant}"
                + (" · test" if job.template.run.test else "")
            ),
        )
    except WorkflowAlreadyStartedError:
        return False
    return True
