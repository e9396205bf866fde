"""``BroadcastWorkflow`` on Temporal's time-skipping test server with fake activities: it
pages through the audience one page per run (continue-as-new), keeps to its rate, waits
for ``send_at``, and a cancel stops it between pages. Runs in Temporal's sandbox."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from herald.contracts import (
    Audience,
    BroadcastCancel,
    BroadcastDefinition,
    BroadcastEnd,
    BroadcastInput,
    BroadcastState,
    BroadcastStatus,
    Channel,
    FanOutPage,
    FanOutResult,
)
from workflows.broadcast import BroadcastWorkflow

pytestmark = [pytest.mark.fast, pytest.mark.timeout(120)]


@dataclass
class FakeAudience:
    """Activities over an in-memory audience, recording what the workflow asked."""

    users: list[str]
    pages: list[FanOutPage] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    ends: list[BroadcastEnd] = field(default_factory=list)
    recorded: int = 0
    cancel_requested: bool = False

    @activity.defn(name="record_broadcast")
    async def record_broadcast(self, definition: BroadcastDefinition) -> None:
        self.recorded += 1

    @activity.defn(name="fan_out_page")
    async def fan_out_page(self, page: FanOutPage) -> FanOutResult:
        self.pages.append(page)
        self.runs.append(activity.info().workflow_run_id or "")
        if self.cancel_requested:
            return FanOutResult(last_user_id=page.after, cancelled=True)
        chunk = [user for user in self.users if user > page.after][: page.limit]
        return FanOutResult(
            last_user_id=chunk[-1] if chunk else page.after,
            started=len(chunk),
            new=len(chunk),
            exhausted=len(chunk) < page.limit,
        )

    @activity.defn(name="end_broadcast")
    async def end_broadcast(self, end: BroadcastEnd) -> None:
        self.ends.append(end)


def _job(
    total: int, *, page_size: int, rate: float, send_at: datetime | None = None
) -> BroadcastInput:
    broadcast_id = uuid.uuid4()
    tenant_id = uuid.uuid4()
    return BroadcastInput(
        broadcast_id=broadcast_id,
        tenant_id=tenant_id,
        tenant="acme",
        channel=Channel.email,
        template="news",
        send_at=send_at,
        rate_per_second=rate,
        page_size=page_size,
        definition=BroadcastDefinition(
            broadcast_id=broadcast_id,
            tenant_id=tenant_id,
            channel=Channel.email,
            template="news",
            audience=Audience(topic="all"),
            send_at=send_at,
            rate_per_second=rate,
            total=total,
            created_at=datetime(2030, 1, 1, tzinfo=UTC),
        ),
    )


async def _start(
    env: WorkflowEnvironment, job: BroadcastInput, queue: str
) -> WorkflowHandle[BroadcastWorkflow, BroadcastState]:
    return await env.client.start_workflow(
        BroadcastWorkflow.run, job, id=job.workflow_id, task_queue=queue
    )


def _worker(env: WorkflowEnvironment, fake: FakeAudience, queue: str) -> Worker:
    return Worker(
        env.client,
        task_queue=queue,
        workflows=[BroadcastWorkflow],
        activities=[fake.record_broadcast, fake.fan_out_page, fake.end_broadcast],
    )


async def test_pages_through_the_audience_one_run_per_page(env: WorkflowEnvironment) -> None:
    fake = FakeAudience([f"user-{i:03d}" for i in range(45)])
    queue = f"q-{uuid.uuid4().hex[:6]}"
    job = _job(45, page_size=10, rate=5.0)
    async with _worker(env, fake, queue):
        handle = await _start(env, job, queue)
        began = await env.get_current_time()
        result = await handle.result()
        took = await env.get_current_time() - began

    assert result == BroadcastState(status=BroadcastStatus.completed, started=45)
    assert [page.after for page in fake.pages] == [
        "",
        "user-009",
        "user-019",
        "user-029",
        "user-039",
    ]
    assert fake.recorded == 1  # only the first run carries the definition
    assert fake.ends == [
        BroadcastEnd(broadcast_id=job.broadcast_id, status=BroadcastStatus.completed, started=45)
    ]
    # Four full pages of 10 at 5 a second: at least 8 seconds of workflow time.
    assert took >= timedelta(seconds=8)
    assert len(set(fake.runs)) == 5  # each page in a run (and a history) of its own


async def test_waits_for_send_at_before_starting_anyone(env: WorkflowEnvironment) -> None:
    fake = FakeAudience(["a", "b"])
    queue = f"q-{uuid.uuid4().hex[:6]}"
    send_at = (await env.get_current_time()) + timedelta(days=2)
    async with _worker(env, fake, queue):
        handle = await _start(env, _job(2, page_size=10, rate=50, send_at=send_at), queue)
        result = await handle.result()

    assert result.started == 2
    assert len(fake.pages) == 1


async def test_a_cancel_stops_it_between_pages(env: WorkflowEnvironment) -> None:
    fake = FakeAudience([f"user-{i:03d}" for i in range(100)])
    queue = f"q-{uuid.uuid4().hex[:6]}"
    async with _worker(env, fake, queue):
        handle = await _start(env, _job(100, page_size=10, rate=1.0), queue)
        while len(fake.pages) < 2:
            await env.sleep(1)
        await handle.signal(BroadcastWorkflow.cancel, BroadcastCancel())
        result = await handle.result()

    assert result.status is BroadcastStatus.cancelled
    assert result.started == 10 * len(fake.pages) < 100
    assert fake.ends[-1].status is BroadcastStatus.cancelled


async def test_a_cancel_seen_in_the_database_ends_it_too(env: WorkflowEnvironment) -> None:
    fake = FakeAudience([f"user-{i:03d}" for i in range(30)], cancel_requested=True)
    queue = f"q-{uuid.uuid4().hex[:6]}"
    async with _worker(env, fake, queue):
        result = await (await _start(env, _job(30, page_size=10, rate=10), queue)).result()

    assert result == BroadcastState(status=BroadcastStatus.cancelled, started=0)
