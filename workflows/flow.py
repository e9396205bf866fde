"""``FlowRun``: one recipient's run of one flow version, step after step.

The run interprets the steps it was started with (the version stored when it was
triggered), so editing the flow never changes a running run. Each ``send`` step is an
ordinary notification accepted through the intake under an id derived from the run and
the step: a step retried after a crash, or replayed, finds its notification already
accepted and sends nothing twice. ``delay`` and ``wait`` are durable timers; a ``wait``
reads the notification's progress on a timer that backs off, and wakes early on a
``step_event`` signal (sent when a receipt for it arrives, ``herald/receipts.py``). A
``digest`` step gathers the triggers of one recipient, flow and key within a window into
the run that opened it (PostgreSQL keeps who joined and their data; a joined run ends
``digested``). Cancelling the workflow (``POST /v1/flow-runs/cancel``) ends a
pending delay or wait at once and cancels the run's notifications not yet sent. The run
writes its row (status and steps) as its steps change.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.flows import FlowActivities
    from herald import search
    from herald.flows.models import (
        DIGEST_FULL_SIGNAL,
        STEP_EVENT_SIGNAL,
        WORKFLOW,
        DigestClosed,
        DigestFull,
        DigestJoin,
        DigestJoined,
        FlowRunInput,
        FlowRunResult,
        NotificationProgress,
        NotificationsToCancel,
        RecipientFacts,
        RecipientRequest,
        RunProgress,
        RunStatus,
        SendStepRequest,
        SendStepResult,
        StepEvent,
        StepState,
        StepStatus,
        ThrottleRequest,
        ThrottleResult,
        condition_paths,
        holds,
        lookup,
        step_key,
        step_notification_id,
    )

# PostgreSQL and Temporal outages delay a run; they never end it.
STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
STEP_TIMEOUT = timedelta(seconds=30)
# A wait reads its notification's progress first after this, then ever less often.
FIRST_POLL = timedelta(seconds=1)
LONGEST_POLL = timedelta(seconds=30)
# A notification in one of these will never be delivered or read: its wait ends.
HOPELESS = frozenset({"failed", "cancelled", "suppressed", "undelivered"})
# ``workflow.patched`` id of the ``HeraldFlowState`` upserts (added after v1 histories).
SEARCH_PATCH = "flow-state-search-attribute"
# ``workflow.patched`` id of digest and throttle steps counting a run at its trigger's time.
TRIGGER_TIME_PATCH = "digest-throttle-at-trigger-time"
# ``workflow.patched`` id of a run cancelled before its first record winding down.
EARLY_CANCEL_PATCH = "wind-down-when-cancelled-at-start"


class _RunEnds(Exception):
    """A step ended the run early (throttled, or a step that cannot go on)."""

    def __init__(self, status: RunStatus) -> None:
        super().__init__(status.value)
        self.status = status


@workflow.defn(name=WORKFLOW)
class FlowRunWorkflow:
    """Runs one flow version's steps for one recipient, exactly once each."""

    def __init__(self) -> None:
        self._steps: list[StepState] = []
        self._events: dict[uuid.UUID, set[str]] = {}
        self._recipient: RecipientFacts | None = None
        # A digest step made this run the carrier of a window (its sends get ``items``).
        self._carrying = False
        self._full = False
        # The run's first record is written.
        self._begun = False
        # The run has waited on something (a delay, a wait, a digest window).
        self._waited = False
        # The state last upserted as ``HeraldFlowState`` (the start set ``running``).
        self._searched: RunStatus | None = None

    @workflow.run
    async def run(self, job: FlowRunInput) -> FlowRunResult:
        """Each step in order; the run's row says where it is."""
        self._job = job
        try:
            await self._record(RunStatus.running)
            self._begun = True
            await self._run_steps(job.steps)
            status = RunStatus.completed
        except _RunEnds as ended:
            status = ended.status
        except BaseException as err:
            if not is_cancelled_exception(err):
                raise
            # Cancelled while an activity ran (its first record, a wait's read) or before
            # its first record was written (a run still in a worker's backlog): it winds
            # down all the same, so its row says cancelled.
            earlier = self._begun and isinstance(err, asyncio.CancelledError)
            if earlier or workflow.patched(EARLY_CANCEL_PATCH):
                await self._wind_down()
            raise
        await self._record(status)
        return FlowRunResult(status=status, steps=self._steps)

    @workflow.signal(name=STEP_EVENT_SIGNAL)
    def step_event(self, event: StepEvent) -> None:
        """News of a send step's notification (a receipt, a read): a wait re-reads it now."""
        self._events.setdefault(event.notification_id, set()).add(event.status)

    @workflow.signal(name=DIGEST_FULL_SIGNAL)
    def digest_full(self, full: DigestFull) -> None:
        """The window this run carries reached its ``max_items``: it closes now."""
        if full.carrier == self._job.run.run_id:
            self._full = True

    @workflow.query
    def progress(self) -> FlowRunResult:
        """The steps reached so far."""
        return FlowRunResult(status=RunStatus.running, steps=self._steps)

    # --- steps -------------------------------------------------------------------------

    async def _run_steps(self, steps: list[dict[str, Any]]) -> None:
        for step in steps:
            state = StepState(
                id=step["id"], type=step["type"], status=StepStatus.running, started_at=self._now()
            )
            self._steps.append(state)
            match step["type"]:
                case "send":
                    await self._send(step, state)
                case "delay":
                    await self._delay(step, state)
                case "wait":
                    await self._wait(step, state)
                case "branch":
                    taken = await self._branch(step, state)
                    await self._run_steps(taken)
                    continue  # the branch's row was written before its steps ran
                case "throttle":
                    await self._throttle(step, state)
                case "digest":
                    await self._digest(step, state)
                case _:
                    self._end(state, StepStatus.failed, f"{step['type']} steps are not supported")
                    raise _RunEnds(RunStatus.failed)
            await self._record(RunStatus.running)

    async def _send(self, step: dict[str, Any], state: StepState) -> None:
        state.notification_id = step_notification_id(self._job.run.run_id, step["id"])
        result: SendStepResult = await workflow.execute_activity_method(
            FlowActivities.send_flow_step,
            SendStepRequest(
                run=self._job.run,
                tenant=self._job.tenant,
                step=step,
                data=self._job.data,
                request_id=self._job.request_id,
                digest=self._carrying,
            ),
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=STEP_RETRY,
            # A cancel waits for an accept under way: its notification then exists to be
            # cancelled, instead of starting just after the run stopped looking.
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        if not result.accepted:
            self._end(state, StepStatus.failed, result.detail)
            raise _RunEnds(RunStatus.failed)
        self._end(state, StepStatus.completed, "accepted")

    async def _delay(self, step: dict[str, Any], state: StepState) -> None:
        if step.get("until") is not None:
            until = _as_time(lookup({"data": self._job.data}, step["until"]))
            if until is None:
                self._end(state, StepStatus.failed, f"{step['until']} is not an ISO 8601 time")
                raise _RunEnds(RunStatus.failed)
            duration = until - self._now()
        else:
            duration = timedelta(seconds=step["seconds"])
        if duration > timedelta(0):
            self._waited = True
            await self._record(RunStatus.running)
            await workflow.sleep(duration)
        self._end(state, StepStatus.completed, None)

    async def _wait(self, step: dict[str, Any], state: StepState) -> None:
        sent = self._state_of(step["step"])
        if sent is None or sent.notification_id is None:
            # The send it waits on was in a branch this run did not take.
            self._end(state, StepStatus.skipped, None)
            return
        self._waited = True
        await self._record(RunStatus.running)
        notification_id = sent.notification_id
        deadline = self._now() + timedelta(seconds=step["timeout_seconds"])
        interval = FIRST_POLL
        while True:
            progress = await self._progress(notification_id)
            if progress.read if step["for"] == "read" else progress.delivered:
                self._end(state, StepStatus.completed, "met")
                return
            remaining = deadline - self._now()
            if remaining <= timedelta(0) or progress.status in HOPELESS:
                self._end(state, StepStatus.completed, "timeout")
                return
            try:
                await workflow.wait_condition(
                    self._news_of(notification_id), timeout=min(interval, remaining)
                )
            except TimeoutError:
                pass
            interval = min(interval * 2, LONGEST_POLL)

    async def _branch(self, step: dict[str, Any], state: StepState) -> list[dict[str, Any]]:
        condition = step["if"]
        taken = holds(condition, await self._facts(condition_paths(condition)))
        self._end(state, StepStatus.completed, "then" if taken else "else")
        await self._record(RunStatus.running)
        result: list[dict[str, Any]] = step["then"] if taken else step.get("else", [])
        return result

    def _key_of(self, step: dict[str, Any]) -> str:
        return step_key(step, self._job.data)

    async def _digest(self, step: dict[str, Any], state: StepState) -> None:
        """Join the open window of this recipient, flow and key, or open one and carry it:
        a joined run ends here, the carrier waits out the window (or until it is full)
        and goes on with every joined trigger's data as ``items``."""
        join = DigestJoin(
            run=self._job.run,
            step_id=step["id"],
            key=self._key_of(step),
            window_seconds=step["window_seconds"],
            max_items=step.get("max_items"),
            data=self._job.data,
            at=self._reached_at(),
        )
        joined: DigestJoined = await workflow.execute_activity_method(
            FlowActivities.join_flow_digest,
            join,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=STEP_RETRY,
        )
        if joined.carrier != self._job.run.run_id:
            state.carrier_run_id = joined.carrier
            self._end(state, StepStatus.completed, "digested")
            raise _RunEnds(RunStatus.completed)
        await self._record(RunStatus.running)
        remaining = joined.closes_at - self._now()
        if not joined.full and remaining > timedelta(0):
            try:
                await workflow.wait_condition(lambda: self._full, timeout=remaining)
            except TimeoutError:
                pass
        closed: DigestClosed = await workflow.execute_activity_method(
            FlowActivities.close_flow_digest,
            join,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=STEP_RETRY,
        )
        self._carrying = True
        self._waited = True
        state.carrier_run_id = self._job.run.run_id
        state.count = closed.count
        self._end(state, StepStatus.completed, "carried")

    async def _throttle(self, step: dict[str, Any], state: StepState) -> None:
        key = self._key_of(step)
        result: ThrottleResult = await workflow.execute_activity_method(
            FlowActivities.throttle_flow_step,
            ThrottleRequest(
                run=self._job.run,
                step_id=step["id"],
                key=key,
                limit=step["limit"],
                window_seconds=step["window_seconds"],
                at=self._reached_at(),
            ),
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=STEP_RETRY,
        )
        if not result.admitted:
            self._end(state, StepStatus.completed, "throttled")
            raise _RunEnds(RunStatus.completed)
        self._end(state, StepStatus.completed, "admitted")

    # --- what conditions read ----------------------------------------------------------

    async def _facts(self, paths: list[str]) -> dict[str, Any]:
        """``data``, ``recipient`` and ``steps`` as the condition's paths need them: the
        recipient is read once per run, a send step's status is its notification's now."""
        steps: dict[str, dict[str, Any]] = {
            state.id: {"status": state.status.value, "outcome": state.outcome}
            for state in self._steps
        }
        for path in paths:
            if path.startswith("steps.") and path.endswith(".status"):
                state = self._state_of(path.split(".")[1])
                if state is not None and state.notification_id is not None:
                    progress = await self._progress(state.notification_id)
                    steps[state.id]["status"] = progress.status
        if self._recipient is None and any(path.startswith("recipient.") for path in paths):
            self._recipient = await workflow.execute_activity_method(
                FlowActivities.flow_recipient,
                RecipientRequest(tenant_id=self._job.run.tenant_id, user_id=self._job.run.user_id),
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=STEP_RETRY,
            )
        recipient = self._recipient.fields if self._recipient is not None else {}
        return {"data": self._job.data, "recipient": recipient, "steps": steps}

    async def _progress(self, notification_id: uuid.UUID) -> NotificationProgress:
        result: NotificationProgress = await workflow.execute_activity_method(
            FlowActivities.notification_progress,
            NotificationProgress(notification_id=notification_id),
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=STEP_RETRY,
        )
        return result

    # --- bookkeeping -------------------------------------------------------------------

    async def _wind_down(self) -> None:
        """After a cancel: the step under way is cancelled, so is every notification the
        run started (one already sent is left as it is), and the row says so."""
        for state in self._steps:
            if state.status is StepStatus.running:
                self._end(state, StepStatus.cancelled, None)
        started = [state.notification_id for state in self._steps if state.notification_id]
        if started:
            await workflow.execute_activity_method(
                FlowActivities.cancel_flow_notifications,
                NotificationsToCancel(notification_ids=started),
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=STEP_RETRY,
            )
        await self._record(RunStatus.cancelled)

    async def _record(self, status: RunStatus) -> None:
        # Runs begun before the attribute existed replay without the upsert.
        if status is not self._searched and workflow.patched(SEARCH_PATCH):
            workflow.upsert_search_attributes([search.FLOW_STATE.value_set(status.value)])
            self._searched = status
        await workflow.execute_activity_method(
            FlowActivities.record_flow_run,
            RunProgress(run=self._job.run, status=status, steps=self._steps),
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=STEP_RETRY,
        )

    def _news_of(self, notification_id: uuid.UUID) -> Callable[[], bool]:
        """Whether a ``step_event`` about the notification arrived since this was made."""
        known = len(self._events.get(notification_id, ()))
        return lambda: len(self._events.get(notification_id, ())) > known

    def _state_of(self, step_id: str) -> StepState | None:
        return next((state for state in self._steps if state.id == step_id), None)

    def _end(self, state: StepState, status: StepStatus, outcome: str | None) -> None:
        state.status = status
        state.outcome = outcome
        state.ended_at = self._now()

    @staticmethod
    def _now() -> datetime:
        return workflow.now()

    def _reached_at(self) -> datetime:
        """When the run reached a digest or throttle step: the trigger's own time until
        the run has waited on anything (a delay, a wait, a digest window), so a worker
        down for a while never moves a trigger out of its window or into the next one;
        afterwards, now."""
        if not self._waited and workflow.patched(TRIGGER_TIME_PATCH):
            return self._job.run.created_at
        return self._now()


def _as_time(value: Any) -> datetime | None:
    """An ISO 8601 time from the trigger's data (without a zone: UTC), or None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
