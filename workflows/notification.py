"""``NotificationWorkflow``: one durable run per send cycle of one notification.

accepted → [scheduled] → load recipient → render → sending → sent | failed, with
``suppressed`` (cannot or must not reach the user) and ``cancelled`` on the way.
The cheap steps are local activities on the core worker; the provider call is a
regular activity on the channel's own task queue with a declarative ``RetryPolicy``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from activities.failures import FailureActivities
    from activities.recipients import RecipientActivities
    from activities.status import StatusActivities
    from activities.templates import TemplateActivities
    from herald import search
    from herald.contracts import (
        AcceptedRecord,
        AttemptFailed,
        CancelRequest,
        Channel,
        FailedNotification,
        NotificationInput,
        NotificationState,
        Recipient,
        RecipientLookup,
        RenderedMessage,
        RenderRequest,
        ResendRequest,
        SendRequest,
        SendResult,
        Status,
        StatusEvent,
        sent_detail,
    )

# Steps that only touch PostgreSQL retry until it is back: a database outage delays a
# notification, it never loses one. Permanent errors are raised as non-retryable.
LOCAL_STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
LOCAL_STEP_TIMEOUT = timedelta(seconds=10)
# Publishing to herald.failed retries for as long as RabbitMQ is away: an outage delays
# the publication, it never loses it.
PUBLISH_FAILED_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
)
PUBLISH_FAILED_TIMEOUT = timedelta(seconds=30)


def _failure_reason(err: ActivityError | ApplicationError) -> tuple[str, int | None]:
    """The last error's message and, where the provider said it, the attempt number.

    A regular activity's failure arrives as ``ActivityError`` wrapping the cause; a local
    activity's arrives as the ``ApplicationError`` itself.
    """
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError):
        details = cause.details[0] if cause.details else {}
        attempt = details.get("attempt") if isinstance(details, dict) else None
        return cause.message, attempt
    if cause is not None:
        return f"{type(cause).__name__}: {cause}", None
    return str(err), None


@workflow.defn
class NotificationWorkflow:
    """Delivers one notification on one channel, or says precisely why it could not."""

    def __init__(self) -> None:
        self._status = Status.accepted
        self._cycle = 1
        self._attempts = 0
        self._last_error: str | None = None
        self._provider: str | None = None
        self._cancel: CancelRequest | None = None
        self._send: asyncio.Task[SendResult] | None = None
        self._request: NotificationInput | None = None
        self._resend_pending = False
        # Channel fallback: which channel of the order is being tried, and why earlier
        # ones could not reach the user.
        self._leg = 0
        self._channel: Channel | None = None
        self._unreached: list[str] = []
        # Signal handlers and the main flow both record transitions; one at a time keeps
        # the log in the order the workflow decided it.
        self._transitions = asyncio.Lock()
        self._sending: StatusEvent | None = None

    @workflow.run
    async def run(self, request: NotificationInput) -> NotificationState:
        """Run one send cycle to a terminal status; a resend asked meanwhile starts the next."""
        state = await self._cycle_run(request)
        if self._resend_pending:
            workflow.continue_as_new(
                request.model_copy(
                    update={"cycle": request.cycle + 1, "created_at": workflow.now()}
                )
            )
        return state

    async def _cycle_run(self, request: NotificationInput) -> NotificationState:
        self._request = request
        self._cycle = request.cycle
        first: Recipient | None = None
        if request.send_at is None or request.send_at <= workflow.now():
            # Nothing to wait for: the recipient lookup also logs accepted (one step).
            first = await self._recipient(request, request.channel, accepted=True)
        else:
            await self._step(StatusActivities.record_accepted, AcceptedRecord(notification=request))
            await self._transition(
                Status.scheduled, detail=f"waiting until {request.send_at.isoformat()}"
            )
            try:
                await workflow.wait_condition(
                    lambda: self._cancel is not None, timeout=request.send_at - workflow.now()
                )
            except TimeoutError:
                pass
        channels = [request.channel, *request.fallback]
        for leg, channel in enumerate(channels):
            if self._cancel is not None:
                return await self._cancelled()
            self._leg, self._channel = leg, channel
            recipient = first if leg == 0 else None
            state = await self._reach(request, channel, recipient, last=leg == len(channels) - 1)
            if state is not None:
                return state
        raise AssertionError("the last channel always ends the cycle")  # pragma: no cover

    async def _recipient(
        self, request: NotificationInput, channel: Channel, *, accepted: bool = False
    ) -> Recipient:
        recipient: Recipient = await self._step(
            RecipientActivities.load_recipient,
            RecipientLookup(
                tenant_id=request.tenant_id,
                user_id=request.user_id,
                channel=channel,
                accepted=request if accepted else None,
            ),
        )
        return recipient

    async def _reach(
        self,
        request: NotificationInput,
        channel: Channel,
        recipient: Recipient | None,
        *,
        last: bool,
    ) -> NotificationState | None:
        """Try to reach the user on ``channel`` (``recipient``: already looked up there);
        None means: fall back to the next one."""
        if recipient is None:
            recipient = await self._recipient(request, channel)
        if recipient.suppressed_reason is not None or recipient.address is None:
            reason = recipient.suppressed_reason or f"no {channel.value} address"
            if last:
                return await self._transition(Status.suppressed, detail=self._all_reasons(reason))
            await self._fall_back(channel, reason)
            return None

        try:
            message: RenderedMessage = await self._step(
                TemplateActivities.render_template,
                RenderRequest(
                    tenant_id=request.tenant_id,
                    template=request.template,
                    channel=channel,
                    locale=request.locale or recipient.locale,
                    version=request.template_version if channel is request.channel else None,
                    data=request.data,
                ),
            )
        except (ActivityError, ApplicationError) as err:
            reason = _failure_reason(err)[0]
            if last:
                return await self._transition(Status.failed, error=self._all_reasons(reason))
            await self._fall_back(channel, reason)
            return None
        if self._cancel is not None:
            return await self._cancelled()

        return await self._deliver(request, channel, recipient.address, message, last=last)

    async def _fall_back(self, channel: Channel, reason: str) -> None:
        """Log why the user cannot be reached on ``channel`` before the next one is tried."""
        self._unreached.append(f"{channel.value}: {reason}")
        await self._note(f"cannot reach the user on {channel.value} ({reason}); falling back")

    def _all_reasons(self, reason: str) -> str:
        """The last reason, after the reasons of the channels tried before it."""
        if not self._unreached or self._channel is None:
            return reason
        return "; ".join([*self._unreached, f"{self._channel.value}: {reason}"])

    async def _deliver(
        self,
        request: NotificationInput,
        channel: Channel,
        address: str,
        message: RenderedMessage,
        *,
        last: bool = True,
    ) -> NotificationState | None:
        retry = request.retry
        await self._transition(
            Status.sending,
            attempt=1,
            template_version=message.template_version,
            detail=f"falling back to {channel.value}" if self._leg else None,
            logged=False,
        )
        self._send = workflow.start_activity(
            f"send_{channel.value}",
            SendRequest(
                notification_id=request.notification_id,
                cycle=request.cycle,
                channel=channel,
                address=address,
                message=message,
                data=request.data,
                max_attempts=retry.max_attempts,
                request_id=request.request_id,
                max_deferrals=retry.max_deferrals,
                leg=self._leg,
                test=request.test,
            ),
            result_type=SendResult,
            task_queue=f"{request.task_queue_prefix}-{channel.value}",
            start_to_close_timeout=timedelta(seconds=retry.send_timeout_seconds),
            retry_policy=RetryPolicy(
                # Deferrals by an open circuit breaker are Temporal attempts too; the
                # activity itself stops after max_attempts provider calls.
                maximum_attempts=retry.max_attempts + retry.max_deferrals,
                initial_interval=timedelta(seconds=retry.initial_interval_seconds),
                backoff_coefficient=retry.backoff_coefficient,
                maximum_interval=timedelta(seconds=retry.maximum_interval_seconds),
            ),
            # A send in flight finishes (and is recorded) before a cancel takes effect.
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        try:
            result = await self._send
        except ActivityError as err:
            await self._ensure_sending_logged()
            if isinstance(err.cause, CancelledError):
                return await self._cancelled()
            reason, attempt = _failure_reason(err)
            if not last:
                await self._fall_back(channel, reason)
                return None
            return await self._transition(
                Status.failed,
                attempt=attempt or retry.max_attempts,
                error=self._all_reasons(reason),
            )
        self._provider = result.provider
        if not result.recorded:
            await self._ensure_sending_logged()
        state = await self._transition(
            Status.sent,
            attempt=result.attempt,
            provider=result.provider,
            provider_message_id=result.provider_message_id,
            detail=sent_detail(channel, result.provider),
            logged=not result.recorded,
        )
        if self._cancel is not None:
            await self._note(f"cancel refused: already sent ({self._cancel.reason})")
        return state

    async def _ensure_sending_logged(self) -> None:
        """Write ``sending`` if the channel worker may not have (a retried write is a no-op)."""
        if self._sending is not None:
            await self._step(StatusActivities.record_status, self._sending)

    async def _cancelled(self) -> NotificationState:
        reason = self._cancel.reason if self._cancel else "cancelled"
        return await self._transition(Status.cancelled, attempt=self._attempts, detail=reason)

    async def _step(self, activity: Any, arg: Any) -> Any:
        """Run a cheap core step as a local activity (no extra task queue round trip)."""
        return await workflow.execute_local_activity_method(
            activity, arg, start_to_close_timeout=LOCAL_STEP_TIMEOUT, retry_policy=LOCAL_STEP_RETRY
        )

    async def _transition(
        self,
        status: Status,
        *,
        attempt: int | None = None,
        detail: str | None = None,
        error: str | None = None,
        provider: str | None = None,
        provider_message_id: str | None = None,
        template_version: int | None = None,
        only_if: Callable[[], bool] | None = None,
        logged: bool = True,
    ) -> NotificationState:
        """Move to ``status`` and append it to the event log.

        ``only_if`` is checked once earlier transitions are recorded; if it no longer
        holds (say, a retry note that lost the race with ``sent``), nothing changes.
        ``logged=False`` moves status and search attributes only: the channel worker
        writes ``sending`` and ``sent`` itself, and the workflow writes them only when it
        could not (see ``_deliver``).
        """
        async with self._transitions:
            if only_if is not None and not only_if():
                return self.status()
            return await self._record_transition(
                status,
                attempt=attempt,
                detail=detail,
                error=error,
                provider=provider,
                provider_message_id=provider_message_id,
                template_version=template_version,
                logged=logged,
            )

    async def _record_transition(
        self,
        status: Status,
        *,
        attempt: int | None,
        detail: str | None,
        error: str | None,
        provider: str | None,
        provider_message_id: str | None,
        template_version: int | None,
        logged: bool,
    ) -> NotificationState:
        assert self._request is not None
        changed = status != self._status
        self._status = status
        if attempt is not None:
            self._attempts = attempt
        if error is not None:
            self._last_error = error
        workflow.upsert_search_attributes(
            search.on_transition(status, self._attempts, workflow.now() if changed else None)
        )
        event = StatusEvent(
            notification_id=self._request.notification_id,
            status=status,
            cycle=self._cycle,
            attempt=self._attempts,
            at=workflow.now(),
            provider=provider,
            provider_message_id=provider_message_id,
            template_version=template_version,
            detail=detail,
            error=error,
            leg=self._leg,
        )
        if status is Status.sending:
            self._sending = event
        if logged:
            await self._step(StatusActivities.record_status, event)
        if status is Status.failed:
            await self._publish_failed()
        return self.status()

    async def _publish_failed(self) -> None:
        """Publish the full request and the last error to ``herald.failed``."""
        request = self._request
        assert request is not None
        await workflow.execute_activity_method(
            FailureActivities.publish_failed,
            FailedNotification(
                id=request.notification_id,
                tenant_id=request.tenant_id,
                tenant=request.tenant,
                channel=request.channel,
                user_id=request.user_id,
                template=request.template,
                locale=request.locale,
                data=request.data,
                send_at=request.send_at,
                # So that ``herald dead replay`` resends it with the channels it may fall back to.
                fallback=request.fallback,
                cycle=self._cycle,
                attempts=self._attempts,
                last_error=self._last_error or "failed",
                failed_at=workflow.now(),
            ),
            start_to_close_timeout=PUBLISH_FAILED_TIMEOUT,
            retry_policy=PUBLISH_FAILED_RETRY,
        )

    async def _note(self, detail: str) -> None:
        """Log something that happened without changing the status."""
        assert self._request is not None
        await self._step(
            StatusActivities.record_status,
            StatusEvent(
                notification_id=self._request.notification_id,
                status=self._status,
                cycle=self._cycle,
                attempt=self._attempts,
                at=workflow.now(),
                detail=detail,
                annotation=True,
                leg=self._leg,
            ),
        )

    @workflow.signal
    def cancel(self, request: CancelRequest | None = None) -> None:
        """Stop the notification if it has not been sent yet (no argument needed)."""
        # Optional so `temporal workflow signal --name cancel` without --input works.
        if self._cancel is None:
            self._cancel = request or CancelRequest()
        if self._send is not None and not self._send.done():
            self._send.cancel()

    @workflow.signal
    def resend(self, request: ResendRequest) -> None:
        """Send again once the current cycle has ended (a new run starts with this signal)."""
        # Delivered with the start of a fresh run, the run itself is the resend.
        if self._request is not None:
            workflow.logger.info("resend requested: %s", request.reason)
            self._resend_pending = True

    # Abandoning it is right: a retry note that lost the race with the outcome is moot.
    @workflow.signal(unfinished_policy=workflow.HandlerUnfinishedPolicy.ABANDON)
    async def attempt_failed(self, failure: AttemptFailed) -> None:
        """A provider attempt failed and Temporal will retry it: the notification is retrying."""

        def current() -> bool:
            return (
                self._status in (Status.sending, Status.retrying)
                and self._cancel is None
                and failure.cycle == self._cycle
                and failure.leg == self._leg
                and failure.attempt >= self._attempts
            )

        await self._transition(
            Status.retrying,
            attempt=failure.attempt,
            provider=failure.provider,
            error=failure.error,
            only_if=current,
        )

    @workflow.query
    def status(self) -> NotificationState:
        """Where this notification is now."""
        return NotificationState(
            status=self._status,
            cycle=self._cycle,
            attempts=self._attempts,
            last_error=self._last_error,
            provider=self._provider,
            channel=self._channel,
        )
