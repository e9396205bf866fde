"""``BroadcastWorkflow``: fans one broadcast out to its audience, one page per run.

[wait for send_at] → start the next page of recipients (keyset order, from PostgreSQL)
→ pause so the broadcast keeps to its rate → continue as new with the cursor moved on,
until the audience is exhausted or the broadcast is cancelled. Each recipient gets an
ordinary ``NotificationWorkflow`` whose id is derived from the broadcast and the user, so
a page retried after a crash starts nobody twice; no run's history holds more than one
page, and no process holds more than one page of the audience in memory.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.broadcasts import BroadcastActivities
    from herald import search
    from herald.contracts import (
        BroadcastCancel,
        BroadcastEnd,
        BroadcastInput,
        BroadcastState,
        BroadcastStatus,
        FanOutPage,
        FanOutResult,
    )

# PostgreSQL and Temporal outages delay a broadcast; they never end it.
STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
STEP_TIMEOUT = timedelta(seconds=30)
# A page of starts takes seconds; a killed worker's page is retried elsewhere once its
# heartbeats stop for this long.
PAGE_TIMEOUT = timedelta(minutes=5)
PAGE_HEARTBEAT_TIMEOUT = timedelta(seconds=5)


@workflow.defn
class BroadcastWorkflow:
    """Starts one notification per recipient of a broadcast, paced, exactly once each."""

    def __init__(self) -> None:
        self._cancel: BroadcastCancel | None = None

    @workflow.run
    async def run(self, job: BroadcastInput) -> BroadcastState:
        """Start one page of recipients, then continue as new with the next."""
        if job.definition is not None:
            await workflow.execute_activity_method(
                BroadcastActivities.record_broadcast,
                job.definition,
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=STEP_RETRY,
            )
        if job.send_at is not None and job.send_at > workflow.now():
            await self._pause(job.send_at - workflow.now())
        if self._cancel is not None:
            return await self._end(job, BroadcastStatus.cancelled, job.started)

        begun = workflow.now()
        page: FanOutResult = await workflow.execute_activity_method(
            BroadcastActivities.fan_out_page,
            FanOutPage(
                broadcast_id=job.broadcast_id,
                tenant_id=job.tenant_id,
                tenant=job.tenant,
                after=job.after,
                limit=job.page_size,
                request_id=job.request_id,
                per_second=job.rate_per_second,
            ),
            start_to_close_timeout=PAGE_TIMEOUT,
            heartbeat_timeout=PAGE_HEARTBEAT_TIMEOUT,
            retry_policy=STEP_RETRY,
        )
        started = job.started + page.started
        if page.started:
            workflow.upsert_search_attributes([search.BROADCAST_STARTED.value_set(started)])
        if page.cancelled or self._cancel is not None:
            return await self._end(job, BroadcastStatus.cancelled, started)
        if page.exhausted:
            return await self._end(job, BroadcastStatus.completed, started)

        # Keep to the rate: the page spreads its starts over its share of the time, and
        # the next may not begin before that share is over.
        due = begun + timedelta(seconds=page.started / job.rate_per_second)
        if due > workflow.now():
            await self._pause(due - workflow.now())
        if self._cancel is not None:
            return await self._end(job, BroadcastStatus.cancelled, started)
        workflow.continue_as_new(
            job.model_copy(
                update={"after": page.last_user_id, "started": started, "definition": None}
            )
        )

    async def _pause(self, duration: timedelta) -> None:
        """Wait ``duration``, or less if the broadcast is cancelled meanwhile."""
        try:
            await workflow.wait_condition(lambda: self._cancel is not None, timeout=duration)
        except TimeoutError:
            pass

    async def _end(
        self, job: BroadcastInput, status: BroadcastStatus, started: int
    ) -> BroadcastState:
        """Record the outcome: the last step of the last run."""
        workflow.upsert_search_attributes([search.STATUS.value_set(status.value)])
        await workflow.execute_activity_method(
            BroadcastActivities.end_broadcast,
            BroadcastEnd(broadcast_id=job.broadcast_id, status=status, started=started),
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=STEP_RETRY,
        )
        return BroadcastState(status=status, started=started)

    @workflow.signal
    def cancel(self, request: BroadcastCancel | None = None) -> None:
        """Start no more recipients; those already started finish (no argument needed)."""
        if self._cancel is None:
            self._cancel = request or BroadcastCancel()
