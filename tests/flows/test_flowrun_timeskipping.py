"""``FlowRun`` on Temporal's time-skipping test server with its activities replaced by
fakes under the same names: delays, waits that are met or time out, branches, throttles
and cancellation, each in workflow time; every history is replayed in the sandbox."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import CancelledError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from herald import search
from herald.flows.definition import parse_flow
from herald.flows.models import (
    DIGEST_FULL_SIGNAL,
    DigestClosed,
    DigestFull,
    DigestJoin,
    DigestJoined,
    FanOutInput,
    FanOutPage,
    FanOutResult,
    FanOutState,
    FlowRunInput,
    FlowRunResult,
    NotificationProgress,
    NotificationsToCancel,
    RecipientFacts,
    RecipientRequest,
    RunIdentity,
    RunProgress,
    RunStatus,
    SendStepRequest,
    SendStepResult,
    StepEvent,
    ThrottleRequest,
    ThrottleResult,
    fan_out_workflow_id,
    run_for,
    run_id_for,
    run_workflow_id,
    step_notification_id,
)
from tests.timeskipping import time_skipping
from workflows.flow import FlowRunWorkflow
from workflows.flow_fanout import FlowFanOutWorkflow

pytestmark = [pytest.mark.fast, pytest.mark.timeout(120)]

QUEUE = "flows-test"


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    # A run upserts ``HeraldFlowState`` as its state changes.
    async with time_skipping() as started:
        yield started


@dataclass
class Send:
    step_id: str
    channel: str
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Window:
    """A digest window as PostgreSQL keeps it (``herald/flows/store.py``)."""

    scope: tuple[str, ...]
    opened: datetime
    members: list[tuple[uuid.UUID, dict[str, Any]]]
    closed: bool = False


@dataclass
class FakeHerald:
    """The flow activities, answering from a script and recording calls."""

    env: WorkflowEnvironment
    sends: list[Send] = field(default_factory=list)
    progress: list[RunProgress] = field(default_factory=list)
    cancelled: list[uuid.UUID] = field(default_factory=list)
    # Whether a notification counts as delivered when read (by its step id).
    delivered: Callable[[str], bool] = lambda step_id: False
    admitted: bool = True
    recipient: dict[str, Any] = field(default_factory=dict)
    step_of: dict[uuid.UUID, str] = field(default_factory=dict)
    windows: dict[uuid.UUID, Window] = field(default_factory=dict)

    def join(self, request: DigestJoin) -> DigestJoined:
        run_id = request.run.run_id
        window = timedelta(seconds=request.window_seconds)
        scope = (request.run.user_id, request.run.flow_key, request.step_id, request.key)
        limit = request.max_items or 10**9
        carrier = next(
            (c for c, w in self.windows.items() if run_id in dict(w.members)),
            None,
        )
        if carrier is None:
            carrier = next(
                (
                    c
                    for c, w in self.windows.items()
                    if w.scope == scope
                    and request.at - window < w.opened < request.at + window
                    and not w.closed
                    and len(w.members) < limit
                ),
                None,
            )
            if carrier is None:
                carrier = run_id
                self.windows[run_id] = Window(scope, request.at, [])
            self.windows[carrier].members.append((run_id, request.data))
            if len(self.windows[carrier].members) >= limit:
                self.windows[carrier].closed = True
        held = self.windows[carrier]
        return DigestJoined(carrier=carrier, closes_at=held.opened + window, full=held.closed)

    def activities(self) -> list[Any]:
        @activity.defn(name="record_flow_run")
        async def record_flow_run(progress: RunProgress) -> None:
            self.progress.append(progress)

        @activity.defn(name="send_flow_step")
        async def send_flow_step(request: SendStepRequest) -> SendStepResult:
            step_id = request.step["id"]
            self.step_of[request.notification_id] = step_id
            now = await self.env.get_current_time()
            data = request.data
            if request.digest:
                items = [data for _, data in self.windows[request.run.run_id].members]
                data = {**data, "items": items, "count": len(items)}
            self.sends.append(Send(step_id, request.step["channel"], now, data))
            return SendStepResult(notification_id=request.notification_id, accepted=True)

        @activity.defn(name="notification_progress")
        async def notification_progress(asked: NotificationProgress) -> NotificationProgress:
            delivered = self.delivered(self.step_of[asked.notification_id])
            return asked.model_copy(
                update={"status": "delivered" if delivered else "sent", "delivered": delivered}
            )

        @activity.defn(name="throttle_flow_step")
        async def throttle_flow_step(request: ThrottleRequest) -> ThrottleResult:
            return ThrottleResult(admitted=self.admitted)

        @activity.defn(name="flow_recipient")
        async def flow_recipient(request: RecipientRequest) -> RecipientFacts:
            return RecipientFacts(fields=self.recipient)

        @activity.defn(name="cancel_flow_notifications")
        async def cancel_flow_notifications(request: NotificationsToCancel) -> None:
            self.cancelled.extend(request.notification_ids)

        @activity.defn(name="join_flow_digest")
        async def join_flow_digest(request: DigestJoin) -> DigestJoined:
            joined = self.join(request)
            if joined.full and joined.carrier != request.run.run_id:
                handle = self.env.client.get_workflow_handle(run_workflow_id(joined.carrier))
                await handle.signal(DIGEST_FULL_SIGNAL, DigestFull(carrier=joined.carrier))
            return joined

        @activity.defn(name="close_flow_digest")
        async def close_flow_digest(request: DigestJoin) -> DigestClosed:
            held = self.windows[request.run.run_id]
            held.closed = True
            return DigestClosed(count=len(held.members))

        return [
            record_flow_run,
            send_flow_step,
            notification_progress,
            throttle_flow_step,
            flow_recipient,
            cancel_flow_notifications,
            join_flow_digest,
            close_flow_digest,
        ]

    @property
    def sent(self) -> list[str]:
        return [send.step_id for send in self.sends]


def job(
    steps: list[dict[str, Any]], data: dict[str, Any] | None = None, flow: str = "onboarding"
) -> FlowRunInput:
    return FlowRunInput(
        run=RunIdentity(
            run_id=uuid.uuid4(),
            tenant_id=uuid.uuid4(),
            flow_key=flow,
            version=1,
            user_id="ada",
            trigger_id=uuid.uuid4(),
            created_at=datetime.now(UTC),
        ),
        tenant="acme",
        steps=parse_flow({"steps": steps}).stored(),
        data=data or {},
    )


def send(step_id: str, channel: str = "email") -> dict[str, Any]:
    return {"id": step_id, "type": "send", "channel": channel, "template": "welcome"}


@pytest.fixture
async def fake(env: WorkflowEnvironment) -> AsyncIterator[FakeHerald]:
    herald = FakeHerald(env)
    async with Worker(
        env.client, task_queue=QUEUE, workflows=[FlowRunWorkflow], activities=herald.activities()
    ):
        yield herald


async def start(env: WorkflowEnvironment, run: FlowRunInput) -> WorkflowHandle[Any, Any]:
    # Triggered now on the test server's clock (which runs ahead of the wall clock).
    at = await env.get_current_time()
    run = run.model_copy(update={"run": run.run.model_copy(update={"created_at": at})})
    return await env.client.start_workflow(
        FlowRunWorkflow.run, run, id=run.run.workflow_id, task_queue=QUEUE
    )


async def finish(env: WorkflowEnvironment, run: FlowRunInput) -> FlowRunResult:
    handle = await start(env, run)
    result: FlowRunResult = await handle.result()
    await replay(env, handle)
    return result


async def replay(env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any]) -> None:
    """The history replays in the sandbox: the workflow is deterministic."""
    replayer = Replayer(workflows=[FlowRunWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(await handle.fetch_history())


def outcomes(result: FlowRunResult) -> dict[str, tuple[str, str | None]]:
    return {step.id: (step.status.value, step.outcome) for step in result.steps}


async def test_a_delay_holds_the_next_send_for_its_time(
    env: WorkflowEnvironment, fake: FakeHerald
) -> None:
    run = job([send("first"), {"id": "pause", "type": "delay", "seconds": 3600}, send("second")])
    result = await finish(env, run)
    assert result.status is RunStatus.completed
    assert fake.sent == ["first", "second"]
    assert fake.sends[1].at - fake.sends[0].at >= timedelta(hours=1)
    # The Temporal UI finds the run by its flow's state.
    described = await env.client.get_workflow_handle(run.run.workflow_id).describe()
    assert described.typed_search_attributes.get(search.FLOW_STATE) == "completed"
    assert outcomes(result) == {
        "first": ("completed", "accepted"),
        "pause": ("completed", None),
        "second": ("completed", "accepted"),
    }
    # Each send step's notification id is derived from the run and the step.
    assert result.steps[0].notification_id == step_notification_id(run.run.run_id, "first")
    assert fake.progress[-1].status is RunStatus.completed


async def test_a_delay_until_a_time_in_the_data(env: WorkflowEnvironment, fake: FakeHerald) -> None:
    when = (await env.get_current_time()) + timedelta(days=2)
    run = job(
        [send("first"), {"id": "until", "type": "delay", "until": "data.due"}, send("second")],
        {"due": when.isoformat()},
    )
    await finish(env, run)
    assert fake.sends[1].at >= when
    bad = await finish(env, job([{"id": "until", "type": "delay", "until": "data.due"}]))
    assert bad.status is RunStatus.failed
    assert "not an ISO 8601 time" in (bad.steps[0].outcome or "")


ONBOARDING = [
    send("push", "push"),
    {"id": "wait", "type": "wait", "step": "push", "for": "delivered", "timeout_seconds": 60},
    {
        "id": "missed",
        "type": "branch",
        "if": {"path": "steps.wait.outcome", "op": "eq", "value": "timeout"},
        "then": [send("email")],
    },
    {
        "id": "plan",
        "type": "branch",
        "if": {"not": {"path": "data.plan", "op": "eq", "value": "pro"}},
        "then": [send("sms", "sms")],
    },
]


async def test_a_wait_met_skips_the_fallback_email(
    env: WorkflowEnvironment, fake: FakeHerald
) -> None:
    fake.delivered = lambda step_id: step_id == "push"
    result = await finish(env, job(ONBOARDING, {"plan": "pro"}))
    assert fake.sent == ["push"]
    assert outcomes(result)["wait"] == ("completed", "met")
    assert outcomes(result)["missed"] == ("completed", "else")
    assert outcomes(result)["plan"] == ("completed", "else")


async def test_a_wait_that_times_out_takes_the_other_path(
    env: WorkflowEnvironment, fake: FakeHerald
) -> None:
    begun = await env.get_current_time()
    result = await finish(env, job(ONBOARDING, {"plan": "free"}))
    assert fake.sent == ["push", "email", "sms"]
    assert outcomes(result)["wait"] == ("completed", "timeout")
    # The fallback went out once the 60 s were up, not before.
    assert fake.sends[1].at - begun >= timedelta(seconds=60)


async def test_a_wait_is_woken_by_a_step_event(env: WorkflowEnvironment, fake: FakeHerald) -> None:
    """A receipt forwarded to the run ends the wait without waiting for the next read."""
    fake.delivered = lambda step_id: False
    run = job([send("push", "push"), {**ONBOARDING[1], "timeout_seconds": 3600}])
    handle = await start(env, run)
    await until(lambda: fake.sent == ["push"])
    fake.delivered = lambda step_id: True
    await handle.signal(
        FlowRunWorkflow.step_event,
        StepEvent(notification_id=step_notification_id(run.run.run_id, "push"), status="delivered"),
    )
    result: FlowRunResult = await handle.result()
    assert outcomes(result)["wait"] == ("completed", "met")
    await replay(env, handle)


async def test_branches_read_the_recipient(env: WorkflowEnvironment, fake: FakeHerald) -> None:
    fake.recipient = {"id": "ada", "phone": None, "email": "ada@example.com"}
    steps = [
        {
            "id": "reach",
            "type": "branch",
            "if": {"path": "recipient.phone", "op": "exists"},
            "then": [send("sms", "sms")],
            "else": [send("email")],
        }
    ]
    result = await finish(env, job(steps))
    assert fake.sent == ["email"]
    assert outcomes(result)["reach"] == ("completed", "else")


async def test_a_throttled_run_ends_before_its_sends(
    env: WorkflowEnvironment, fake: FakeHerald
) -> None:
    fake.admitted = False
    steps = [{"id": "limit", "type": "throttle", "limit": 3, "window_seconds": 60}, send("mail")]
    result = await finish(env, job(steps))
    assert result.status is RunStatus.completed
    assert outcomes(result) == {"limit": ("completed", "throttled")}
    assert fake.sent == []


async def test_cancel_during_a_delay_stops_the_run_before_its_next_send(
    env: WorkflowEnvironment, fake: FakeHerald
) -> None:
    run = job([send("first"), {"id": "pause", "type": "delay", "seconds": 3600}, send("second")])
    handle = await start(env, run)
    await until(
        lambda: any(
            step.id == "pause" and step.status.value == "running"
            for progress in fake.progress
            for step in progress.steps
        )
    )
    # Five minutes into the hour, the cancellation key's run is cancelled.
    await env.sleep(timedelta(minutes=5))
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    assert isinstance(failed.value.cause, CancelledError)
    assert fake.sent == ["first"]
    last = fake.progress[-1]
    assert last.status is RunStatus.cancelled
    assert {step.id: step.status.value for step in last.steps} == {
        "first": "completed",
        "pause": "cancelled",
    }
    # The run's notifications are asked to stop (one already sent stays as it is).
    assert fake.cancelled == [step_notification_id(run.run.run_id, "first")]
    await replay(env, handle)


async def test_a_run_cancelled_while_its_first_record_is_written_says_cancelled() -> None:
    """Cancelled before its first record was written (a run in a worker's backlog when
    its key was cancelled): it winds down like any other, its row ends ``cancelled``.
    On a server of its own: the record it holds up would stop the shared one's clock."""
    run = job([{"id": "pause", "type": "delay", "seconds": 3600}, send("later")])
    writing, release = asyncio.Event(), asyncio.Event()
    async with time_skipping() as own:
        fake = FakeHerald(own)

        @activity.defn(name="record_flow_run")
        async def slow_first_record(progress: RunProgress) -> None:
            if not writing.is_set():
                writing.set()
                await release.wait()  # still writing when the run is cancelled
                return
            fake.progress.append(progress)

        others = [a for a in fake.activities() if a.__name__ != "record_flow_run"]
        async with Worker(
            own.client,
            task_queue=QUEUE,
            workflows=[FlowRunWorkflow],
            activities=[slow_first_record, *others],
        ):
            handle = await own.client.start_workflow(
                FlowRunWorkflow.run, run, id=run.run.workflow_id, task_queue=QUEUE
            )
            await writing.wait()
            await handle.cancel()
            with pytest.raises(WorkflowFailureError):
                await handle.result()
            release.set()
        assert [p.status for p in fake.progress] == [RunStatus.cancelled]
        await replay(own, handle)


def digest_flow(window: int, max_items: int | None = None) -> list[dict[str, Any]]:
    digest: dict[str, Any] = {"id": "batch", "type": "digest", "window_seconds": window}
    if max_items is not None:
        digest["max_items"] = max_items
    return [{**digest, "key": "data.thread"}, send("summary")]


def reached(fake: FakeHerald, run: FlowRunInput, step_id: str) -> bool:
    """Whether the run recorded ``step_id`` as running (it waits in it)."""
    return any(
        progress.run.run_id == run.run.run_id
        and any(step.id == step_id and step.status.value == "running" for step in progress.steps)
        for progress in fake.progress
    )


async def test_triggers_in_one_window_continue_as_one_run(
    env: WorkflowEnvironment, fake: FakeHerald
) -> None:
    flow = f"digest-{uuid.uuid4().hex[:6]}"
    first = job(digest_flow(600), {"thread": "t1", "n": 1}, flow)
    carrier = await start(env, first)
    await until(lambda: reached(fake, first, "batch"))
    others = [job(digest_flow(600), {"thread": "t1", "n": n}, flow) for n in (2, 3)]
    # Another key is another window.
    apart = job(digest_flow(600), {"thread": "t2", "n": 9}, flow)
    # Started and joined before any result is awaited: the test server skips time only
    # while a result is awaited, so the window cannot close under them.
    # Each joins before the next starts, so the items' order (the order they joined
    # in) is known.
    handles = []
    for joined in others:
        handles.append(await start(env, joined))
        members = len(handles) + 1
        await until(lambda m=members: len(fake.windows[first.run.run_id].members) == m)
    for handle in handles:
        result: FlowRunResult = await handle.result()
        await replay(env, handle)
        assert result.status is RunStatus.completed
        assert outcomes(result) == {"batch": ("completed", "digested")}
        assert result.steps[0].carrier_run_id == first.run.run_id
    begun = await env.get_current_time()
    carried: FlowRunResult = await carrier.result()
    await replay(env, carrier)
    assert outcomes(carried) == {
        "batch": ("completed", "carried"),
        "summary": ("completed", "accepted"),
    }
    assert carried.steps[0].count == 3
    [summary] = fake.sends
    assert summary.data["count"] == 3
    assert [item["n"] for item in summary.data["items"]] == [1, 2, 3]
    assert summary.at - begun <= timedelta(seconds=600)

    # The window has closed: the next trigger opens a new one (and t2 had its own).
    after = job(digest_flow(600), {"thread": "t1", "n": 4}, flow)
    for alone in (await finish(env, after), await finish(env, apart)):
        assert outcomes(alone)["batch"] == ("completed", "carried")
        assert alone.steps[0].count == 1
    assert [send.data["count"] for send in fake.sends] == [3, 1, 1]


async def test_max_items_closes_a_window_early(env: WorkflowEnvironment, fake: FakeHerald) -> None:
    flow = f"digest-{uuid.uuid4().hex[:6]}"
    first = job(digest_flow(3600, max_items=2), {"thread": "t"}, flow)
    carrier = await start(env, first)
    await until(lambda: reached(fake, first, "batch"))
    begun = await env.get_current_time()
    joiner = await start(env, job(digest_flow(3600, max_items=2), {"thread": "t"}, flow))
    # Full: the carrier goes on at once (no result awaited, so no time skipped).
    await until(lambda: len(fake.sends) == 1)
    assert fake.sends[0].at - begun < timedelta(seconds=60)
    second: FlowRunResult = await joiner.result()
    assert outcomes(second)["batch"] == ("completed", "digested")
    carried: FlowRunResult = await carrier.result()
    assert carried.steps[0].count == 2
    await replay(env, carrier)
    # The third trigger finds the window closed and opens its own.
    third = await finish(env, job(digest_flow(3600, max_items=2), {"thread": "t"}, flow))
    assert outcomes(third)["batch"] == ("completed", "carried")
    assert third.steps[0].count == 1


async def until(check: Callable[[], bool], seconds: float = 20.0) -> None:
    """Poll ``check`` until it holds, or fail after ``seconds`` of real time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_a_topic_fans_out_page_by_page_continuing_as_new(
    env: WorkflowEnvironment,
) -> None:
    """Seven subscribers in pages of three: three pages, each its own run of the
    workflow, each subscriber started once (the run ids derive from the trigger)."""
    subscribers = [f"u{n}" for n in range(7)]
    pages: list[FanOutPage] = []
    started: list[FlowRunInput] = []

    @activity.defn(name="fan_out_flow_page")
    async def fan_out_flow_page(page: FanOutPage) -> FanOutResult:
        pages.append(page)
        after = [user for user in subscribers if page.after is None or user > page.after]
        users = after[: page.limit]
        started.extend(run_for(page.template, user) for user in users)
        return FanOutResult(
            started=len(users),
            last_user_id=users[-1] if users else None,
            exhausted=len(users) < page.limit,
        )

    template = job([send("mail")])
    async with Worker(
        env.client,
        task_queue=QUEUE,
        workflows=[FlowFanOutWorkflow],
        activities=[fan_out_flow_page],
    ):
        handle = await env.client.start_workflow(
            FlowFanOutWorkflow.run,
            FanOutInput(template=template, topic="news", page_size=3),
            id=fan_out_workflow_id(template.run.trigger_id),
            task_queue=QUEUE,
        )
        result: FanOutState = await handle.result()
    assert result.started == 7
    assert [page.after for page in pages] == [None, "u2", "u5"]
    assert [run.run.user_id for run in started] == subscribers
    assert len({run.run.run_id for run in started}) == 7
    assert started[0].run.run_id == run_id_for(template.run.trigger_id, "u0")
