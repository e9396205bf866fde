"""Flow activities: write a run's row, send a step's notification through the intake,
read a notification's progress, count a throttle, gather a digest, read the recipient,
cancel a cancelled run's notifications. They run on the core worker."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from herald.contracts import CancelRequest, NotificationRequest, workflow_id_for
from herald.flows import store
from herald.flows.models import (
    DIGEST_FULL_SIGNAL,
    DigestClosed,
    DigestFull,
    DigestJoin,
    DigestJoined,
    FanOutPage,
    FanOutResult,
    NotificationProgress,
    NotificationsToCancel,
    RecipientFacts,
    RecipientRequest,
    RunProgress,
    SendStepRequest,
    SendStepResult,
    ThrottleRequest,
    ThrottleResult,
    run_for,
    run_workflow_id,
)
from herald.intake import Accepted, Conflict, Intake, Invalid, Replayed, Submission, Unstarted
from herald.settings import Settings
from herald.tenants import TenantContext

# The notification (and its workflow's input) carries the digest's items: their data is
# kept to this many bytes of JSON, oldest first (``count`` still says how many there were).
ITEMS_BUDGET = 256 * 1024


def _within_budget(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    kept: list[dict[str, Any]] = []
    spent = 0
    for item in items:
        spent += len(json.dumps(item, separators=(",", ":")).encode())
        if spent > ITEMS_BUDGET:
            break
        kept.append(item)
    return kept


class FlowActivities:
    """Built once per core worker around the process's engine and Temporal client."""

    def __init__(self, engine: AsyncEngine, client: Client, settings: Settings) -> None:
        self._engine = engine
        self._client = client
        self._settings = settings
        self._intake = Intake(client, engine, settings)

    @property
    def activities(self) -> list[Any]:
        """What the core worker registers."""
        return [
            self.record_flow_run,
            self.send_flow_step,
            self.notification_progress,
            self.throttle_flow_step,
            self.flow_recipient,
            self.cancel_flow_notifications,
            self.join_flow_digest,
            self.close_flow_digest,
            self.fan_out_flow_page,
        ]

    @activity.defn(name="record_flow_run")
    async def record_flow_run(self, progress: RunProgress) -> None:
        """Write the run's row as it is now."""
        await store.record_progress(self._engine, progress)

    @activity.defn(name="send_flow_step")
    async def send_flow_step(self, request: SendStepRequest) -> SendStepResult:
        """Accept the step's notification through the intake, under an id derived from
        the run and the step: a retried or replayed step finds it accepted (``Replayed``)
        and starts nothing. The notification is an ordinary one in the run's test mode."""
        notification_id = request.notification_id
        step = request.step
        data = request.data
        if request.digest:
            items = await store.digest_items(self._engine, request.run.run_id)
            data = {**data, "items": _within_budget(items), "count": len(items)}
        try:
            notification = NotificationRequest(
                channel=step["channel"],
                user_id=request.run.user_id,
                template=step["template"],
                locale=step.get("locale"),
                data=data,
                fallback=step.get("fallback", []),
                confirm_within_seconds=step.get("confirm_within_seconds"),
            )
        except ValidationError as err:
            problem = err.errors(include_url=False)[0]
            where = ".".join(str(part) for part in problem["loc"]) or "request"
            return SendStepResult(
                notification_id=notification_id, accepted=False, detail=f"{where}: {problem['msg']}"
            )
        tenant = TenantContext(request.run.tenant_id, request.tenant, test=request.run.test)
        # Before the accept: a receipt for the notification always finds its run.
        await store.link_notification(self._engine, notification_id, request.run)
        outcome = await self._intake.accept_one(
            tenant,
            Submission(notification, notification_id=notification_id),
            request_id=request.request_id,
        )
        match outcome:
            case Accepted() | Replayed():
                return SendStepResult(notification_id=notification_id, accepted=True)
            case Invalid(field=field, message=message):
                detail = f"{field}: {message}"
            case Conflict(message=message):
                detail = message
            case Unstarted(error=error):
                raise error  # a service said no for now: retried
        return SendStepResult(notification_id=notification_id, accepted=False, detail=detail)

    @activity.defn(name="notification_progress")
    async def notification_progress(self, asked: NotificationProgress) -> NotificationProgress:
        """The notification's status, and whether it was delivered or read."""
        return await store.notification_progress(self._engine, asked.notification_id)

    @activity.defn(name="throttle_flow_step")
    async def throttle_flow_step(self, request: ThrottleRequest) -> ThrottleResult:
        """Count the run against its throttle window (a retry answers the same)."""
        return ThrottleResult(admitted=await store.throttle(self._engine, request))

    @activity.defn(name="flow_recipient")
    async def flow_recipient(self, request: RecipientRequest) -> RecipientFacts:
        """What the run's conditions may read of its recipient."""
        return await store.recipient_facts(self._engine, request.tenant_id, request.user_id)

    @activity.defn(name="cancel_flow_notifications")
    async def cancel_flow_notifications(self, request: NotificationsToCancel) -> None:
        """Ask a cancelled run's notifications to stop: one not yet sent never is; one
        that ended (or was never started) is left as it is."""

        async def cancel(notification_id: Any) -> None:
            handle = self._client.get_workflow_handle(workflow_id_for(notification_id))
            try:
                await handle.signal("cancel", CancelRequest())
            except RPCError as err:
                if err.status is not RPCStatusCode.NOT_FOUND:
                    raise

        await asyncio.gather(*(cancel(nid) for nid in request.notification_ids))

    @activity.defn(name="join_flow_digest")
    async def join_flow_digest(self, request: DigestJoin) -> DigestJoined:
        """Join the open digest window of the run's recipient, flow and key (or open one);
        a run that fills a window wakes the run that carries it."""
        joined = await store.join_digest(self._engine, request)
        if joined.full and joined.carrier != request.run.run_id:
            handle = self._client.get_workflow_handle(run_workflow_id(joined.carrier))
            try:
                await handle.signal(DIGEST_FULL_SIGNAL, DigestFull(carrier=joined.carrier))
            except RPCError as err:
                if err.status is not RPCStatusCode.NOT_FOUND:
                    raise  # retried: the join answers the same, and signals again
        return joined

    @activity.defn(name="close_flow_digest")
    async def close_flow_digest(self, request: DigestJoin) -> DigestClosed:
        """Close the window the run carries; how many triggers it gathered."""
        return DigestClosed(count=await store.close_digest(self._engine, request))

    @activity.defn(name="fan_out_flow_page")
    async def fan_out_flow_page(self, page: FanOutPage) -> FanOutResult:
        """Start the runs of the next page of a topic's subscribers (those started before,
        by an earlier attempt of this page, are found started and left as they are)."""
        template = page.template
        users = await store.subscribers_page(
            self._engine, template.run.tenant_id, page.topic, page.after, page.limit
        )
        jobs = [run_for(template, user_id) for user_id in users]
        bound = asyncio.Semaphore(self._settings.batch_start_concurrency)

        async def start(job: Any) -> bool:
            async with bound:
                started = await store.start_run(self._client, self._settings, self._engine, job)
            activity.heartbeat()
            return started

        started = await asyncio.gather(*(start(job) for job in jobs))
        await store.write_runs(
            self._engine, [job.run for job, new in zip(jobs, started, strict=True) if new]
        )
        return FanOutResult(
            started=sum(started),
            last_user_id=users[-1] if users else None,
            exhausted=len(users) < page.limit,
        )
