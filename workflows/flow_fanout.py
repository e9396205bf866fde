"""``FlowFanOut``: a topic trigger, one ``FlowRun`` per subscriber, page by page.

Each page is one activity that starts its subscribers' runs under ids derived from the
trigger and the user (``run_id_for``): a page retried after a crash, or a trigger
repeated with its idempotency key, starts nobody twice. Between pages the workflow
continues as new, so its history stays small for a topic of any size.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.flows import FlowActivities
    from herald.flows.models import (
        FAN_OUT_WORKFLOW,
        FanOutInput,
        FanOutPage,
        FanOutResult,
        FanOutState,
    )

STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
PAGE_TIMEOUT = timedelta(minutes=5)
PAGE_HEARTBEAT_TIMEOUT = timedelta(seconds=30)


@workflow.defn(name=FAN_OUT_WORKFLOW)
class FlowFanOutWorkflow:
    """Starts one run per subscriber of a topic, exactly once each."""

    @workflow.run
    async def run(self, job: FanOutInput) -> FanOutState:
        """One page, then continue as new with the next."""
        page: FanOutResult = await workflow.execute_activity_method(
            FlowActivities.fan_out_flow_page,
            FanOutPage(
                template=job.template, topic=job.topic, after=job.after, limit=job.page_size
            ),
            start_to_close_timeout=PAGE_TIMEOUT,
            heartbeat_timeout=PAGE_HEARTBEAT_TIMEOUT,
            retry_policy=STEP_RETRY,
        )
        started = job.started + page.started
        if page.exhausted or page.last_user_id is None:
            return FanOutState(started=started)
        workflow.continue_as_new(
            job.model_copy(update={"after": page.last_user_id, "started": started})
        )
