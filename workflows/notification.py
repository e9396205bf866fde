"""``NotificationWorkflow``: one durable run per send cycle of one notification.

accepted → [scheduled] → prepare (recipient, render) → [scheduled: the user's quiet
hours] → sending → sent | failed, with ``suppressed`` (cannot or must not reach the user)
and ``cancelled`` on the way. With ``confirm_within_seconds`` and a fallback, a send not
confirmed ``delivered`` in time (or reported ``undelivered``) goes on to the next channel.

The run lives on its channel's task queue, so the channel's workers run it and the
channel scales by starting more of them. A clean send is one workflow task: ``prepare``
(one statement) and the first provider attempt are local activities of that task (the
attempt logs ``sending``, stamped before the provider call, with ``sent`` in one
statement after it), the rendered body stays in the worker instead of the history,
and no search attribute is upserted: a clean send has no ``HeraldStatus``, every
other run shows its status from its first lasting transition on. Only a first attempt
that fails transiently, is deferred by an open circuit breaker or finds the sending rate
used up goes on as a regular activity under the declarative ``RetryPolicy``: a pending
activity in the Temporal UI with its attempt count, last failure and next retry, and
``HeraldStatus="retrying"``. A fallback channel's sends are regular activities on that
channel's queue.

The workflow decides every status; the send step records only what it did (``sending``
with ``sent`` after its provider call, ``retrying`` for an attempt Temporal will retry).
Runs started before this shape finish on the core worker (``notification_v1.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from activities.failures import FailureActivities
    from activities.prepare import PrepareActivities
    from activities.status import StatusActivities
    from herald import search
    from herald.contracts import (
        RECEIPT_SIGNAL,
        AcceptedRecord,
        AttemptFailed,
        CancelRequest,
        Channel,
        FailedNotification,
        NotificationInput,
        NotificationState,
        Prepared,
        PrepareRequest,
        ReceiptSignal,
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
    from herald.quiet import quiet_until
    from herald.temporal import channel_task_queue

# Steps that only touch PostgreSQL retry until it is back: a database outage delays a
# notification, it never loses one. Permanent errors are raised as non-retryable.
LOCAL_STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
LOCAL_STEP_TIMEOUT = timedelta(seconds=10)
# The first provider attempt runs once as a local activity; what follows it is a
# regular activity with the notification's own retry policy.
FIRST_ATTEMPT_RETRY = RetryPolicy(maximum_attempts=1)
# Publishing to herald.failed retries for as long as RabbitMQ is away: an outage delays
# the publication, it never loses it.
PUBLISH_FAILED_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
)
PUBLISH_FAILED_TIMEOUT = timedelta(seconds=30)


class _Failure:
    """A failed send step, read from the error Temporal hands back."""

    def __init__(self, err: ActivityError | ApplicationError) -> None:
        cause = err.cause if isinstance(err, ActivityError) else err
        self.cancelled = isinstance(cause, CancelledError)
        details: dict[str, Any] = {}
        if isinstance(cause, ApplicationError):
            self.message = cause.message
            self.final = cause.non_retryable
            if cause.details and isinstance(cause.details[0], dict):
                details = cause.details[0]
        else:
            self.message = f"{type(cause).__name__}: {cause}" if cause is not None else str(err)
            self.final = False
        # Provider calls this send has made so far, and when the next may come.
        self.attempt: int | None = details.get("attempt")
        self.retry_in: float | None = details.get("retry_in")
        # Whether the send step logged its attempt (``sending`` and ``retrying``).
        self.logged: bool | None = details.get("logged")
        # When the step logged the failed attempt (its ``retrying`` event).
        at = details.get("at")
        self.at = datetime.fromisoformat(at) if isinstance(at, str) else None


@workflow.defn(name="NotificationWorkflow")
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
        # The send step stamps its events with the time it wrote them, after this
        # workflow task began: later events of the workflow are never older.
        self._clock: datetime | None = None
        # Delivery receipts of this cycle, with the fallback leg that was current when
        # each arrived (what it reports on).
        self._receipts: list[tuple[int, ReceiptSignal]] = []
        # Whether this run shows a status in the Temporal UI (``HeraldStatus``): from its
        # first transition that lasts beyond a workflow task, or from its start if it began
        # with one (runs started before clean sends went without, a digest's, a resend
        # continuing a run that had one). A clean send never gets one (see ``_transition``).
        self._visible = False

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
        self._visible = workflow.info().typed_search_attributes.get(search.STATUS) is not None
        first: Prepared | None = None
        if request.send_at is None or request.send_at <= workflow.now():
            # Nothing to wait for: the first step also logs accepted.
            first = await self._prepare(request, request.channel, accepted=True)
        else:
            await self._step(StatusActivities.record_accepted, AcceptedRecord(notification=request))
            await self._hold(request.send_at, f"waiting until {request.send_at.isoformat()}")
        channels = [request.channel, *request.fallback]
        for leg, channel in enumerate(channels):
            if self._cancel is not None:
                return await self._cancelled()
            self._leg, self._channel = leg, channel
            prepared = first if leg == 0 else None
            state = await self._reach(request, channel, prepared, last=leg == len(channels) - 1)
            if state is not None:
                return state
        raise AssertionError("the last channel always ends the cycle")  # pragma: no cover

    async def _prepare(
        self, request: NotificationInput, channel: Channel, *, accepted: bool = False
    ) -> Prepared:
        prepared: Prepared = await self._step(
            PrepareActivities.prepare,
            PrepareRequest(
                lookup=RecipientLookup(
                    tenant_id=request.tenant_id,
                    user_id=request.user_id,
                    channel=channel,
                    accepted=request if accepted else None,
                    template=request.template,
                    notification_id=request.notification_id,
                ),
                # This worker sends on the first channel itself (its local attempt).
                cycle=request.cycle if channel is request.channel else None,
                render=RenderRequest(
                    tenant_id=request.tenant_id,
                    template=request.template,
                    channel=channel,
                    locale=request.locale,
                    version=request.template_version if channel is request.channel else None,
                    data=request.data,
                    user_id=request.user_id,
                ),
            ),
        )
        return prepared

    async def _reach(
        self,
        request: NotificationInput,
        channel: Channel,
        prepared: Prepared | None,
        *,
        last: bool,
    ) -> NotificationState | None:
        """Try to reach the user on ``channel`` (``prepared``: already looked up there);
        None means: fall back to the next one."""
        if prepared is None:
            prepared = await self._prepare(request, channel)
        recipient = prepared.recipient
        if prepared.recorded is not None:
            # Sent, and logged, before a crash ended the workflow task: the send step
            # answers with that acceptance instead of sending again.
            return await self._deliver(request, channel, recipient.address or "", prepared, last)
        if recipient.suppressed_reason is not None or recipient.address is None:
            reason = recipient.suppressed_reason or f"no {channel.value} address"
            if last:
                return await self._transition(Status.suppressed, detail=self._all_reasons(reason))
            await self._fall_back(channel, reason)
            return None
        if prepared.message is None:
            reason = prepared.render_error or "the template could not be rendered"
            if last:
                return await self._transition(Status.failed, error=self._all_reasons(reason))
            await self._fall_back(channel, reason)
            return None
        quiet_ends = quiet_until(
            recipient.quiet_hours, recipient.timezone, workflow.now(), request.priority
        )
        if quiet_ends is not None:
            await self._hold(quiet_ends, f"quiet hours until {quiet_ends.isoformat()}")
        if self._cancel is not None:
            return await self._cancelled()
        return await self._deliver(request, channel, recipient.address, prepared, last)

    async def _hold(self, until: datetime, why: str) -> None:
        """``scheduled`` until ``until`` (a durable timer), or until a cancel; the Temporal
        UI shows why as the run's current details."""
        await self._transition(Status.scheduled, detail=why)
        workflow.set_current_details(why)
        try:
            await workflow.wait_condition(
                lambda: self._cancel is not None, timeout=until - workflow.now()
            )
        except TimeoutError:
            pass
        workflow.set_current_details("")

    async def _fall_back(self, channel: Channel, reason: str) -> None:
        """Log why the user cannot be reached on ``channel`` before the next one is tried."""
        self._unreached.append(f"{channel.value}: {reason}")
        await self._note(f"cannot reach the user on {channel.value} ({reason}); falling back")

    def _all_reasons(self, reason: str) -> str:
        """The last reason, after the reasons of the channels tried before it."""
        if not self._unreached or self._channel is None:
            return reason
        return "; ".join([*self._unreached, f"{self._channel.value}: {reason}"])

    def _send_request(
        self, request: NotificationInput, channel: Channel, address: str, prepared: Prepared
    ) -> SendRequest:
        # Without a message only when ``prepared.recorded``: nothing is sent.
        message = prepared.message or RenderedMessage(template_version=0, locale="", body="")
        render = None
        if prepared.body_kept:
            # The body is not in the history: the send step has it, or renders it again.
            render = RenderRequest(
                tenant_id=request.tenant_id,
                template=request.template,
                channel=channel,
                user_id=request.user_id,
            )
        return SendRequest(
            notification_id=request.notification_id,
            cycle=request.cycle,
            channel=channel,
            address=address,
            message=message,
            data=request.data,
            max_attempts=request.retry.max_attempts,
            request_id=request.request_id,
            max_deferrals=request.retry.max_deferrals,
            leg=self._leg,
            record_sending=False,
            announce_retries=False,
            test=request.test,
            render=render,
            tenant_id=request.tenant_id,
        )

    async def _deliver(
        self,
        request: NotificationInput,
        channel: Channel,
        address: str,
        prepared: Prepared,
        last: bool,
    ) -> NotificationState | None:
        send = self._send_request(request, channel, address, prepared)
        message = send.message
        sending = self._event(
            Status.sending,
            attempt=1,
            template_version=message.template_version,
            detail=f"falling back to {channel.value}" if self._leg else None,
        )
        if channel is request.channel:
            # This worker is the channel's own: the first attempt is a step of this task,
            # and it records ``sending`` itself.
            self._move(Status.sending, attempt=1)
            try:
                result = await workflow.execute_local_activity(
                    f"send_{channel.value}",
                    send.model_copy(
                        update={
                            "record_sending": True,
                            "recorded": prepared.recorded,
                            "checked_at": prepared.checked_at,
                        }
                    ),
                    result_type=SendResult,
                    start_to_close_timeout=timedelta(seconds=request.retry.send_timeout_seconds),
                    retry_policy=FIRST_ATTEMPT_RETRY,
                )
            except (ActivityError, ApplicationError) as err:
                failure = _Failure(err)
                self._advance(failure.at)
                if failure.final:
                    return await self._give_up(channel, failure, sending, last)
                announced = send.model_copy(update={"announce_retries": True})
                result_or_end = await self._retry(
                    request, channel, announced, failure, sending, last
                )
                if not isinstance(result_or_end, SendResult):
                    return result_or_end
                result = result_or_end
        else:
            await self._transition(
                Status.sending,
                attempt=1,
                template_version=message.template_version,
                detail=sending.detail,
            )
            announced = send.model_copy(update={"announce_retries": True})
            result_or_end = await self._activity(request, channel, announced, sending, last)
            if not isinstance(result_or_end, SendResult):
                return result_or_end
            result = result_or_end
        state = await self._sent(channel, result, sending)
        if request.confirm_within_seconds and not last:
            if not await self._confirmed(channel, request.confirm_within_seconds):
                return None
        return state

    async def _confirmed(self, channel: Channel, seconds: float) -> bool:
        """Wait (a durable timer) for a receipt of what was just sent on ``channel``;
        False, with the reason logged, if it was not delivered in time: fall back."""
        leg = self._leg

        def heard() -> bool:
            return self._cancel is not None or any(at == leg for at, _ in self._receipts)

        why = f"waiting up to {seconds:g}s for a delivery receipt"
        workflow.set_current_details(why)
        try:
            await workflow.wait_condition(heard, timeout=timedelta(seconds=seconds))
        except TimeoutError:
            pass
        workflow.set_current_details("")
        receipts = [receipt for at, receipt in self._receipts if at == leg]
        if any(receipt.status is Status.delivered for receipt in receipts):
            self._move(Status.delivered, visible=True)
            return True
        if self._cancel is not None and not receipts:
            return True  # sent, and asked to stop: nothing more is tried
        if receipts:
            reason = f"undelivered: {receipts[-1].reason or 'the provider reported it'}"
        else:
            reason = f"not confirmed delivered within {seconds:g}s"
        await self._fall_back(channel, reason)
        return False

    async def _retry(
        self,
        request: NotificationInput,
        channel: Channel,
        send: SendRequest,
        failure: _Failure,
        sending: StatusEvent,
        last: bool,
    ) -> SendResult | NotificationState | None:
        """The first attempt did not get through: go on as a regular activity under the
        retry policy. A failed provider call (already logged as ``retrying``) becomes that
        activity's first attempt, so Temporal shows it with the next retry's time."""
        if failure.logged is False:
            # The step could not log its attempt (PostgreSQL did not answer).
            await self._ensure_logged(sending)
        # A first attempt that timed out still called the provider.
        spent = 1 if failure.attempt is None else failure.attempt
        if spent:
            self._move(Status.retrying, attempt=spent, error=failure.message, visible=True)
            send = send.model_copy(
                update={"first_failure": failure.message, "first_retry_in": failure.retry_in}
            )
        else:
            # No provider call was made (an open breaker, the sending rate): still sending.
            self._move(Status.sending, error=failure.message, visible=True)
        return await self._activity(request, channel, send, sending, last)

    async def _activity(
        self,
        request: NotificationInput,
        channel: Channel,
        send: SendRequest,
        sending: StatusEvent,
        last: bool,
    ) -> SendResult | NotificationState | None:
        """Send as a regular activity on the channel's queue, retried by Temporal."""
        retry = request.retry
        self._send = workflow.start_activity(
            f"send_{channel.value}",
            send,
            result_type=SendResult,
            task_queue=channel_task_queue(channel, request.task_queue_prefix),
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
            result: SendResult = await self._send
        except ActivityError as err:
            failure = _Failure(err)
            if failure.cancelled:
                await self._ensure_logged(sending)
                return await self._cancelled()
            return await self._give_up(channel, failure, sending, last)
        return result

    async def _give_up(
        self, channel: Channel, failure: _Failure, sending: StatusEvent, last: bool
    ) -> NotificationState | None:
        """No more attempts on ``channel``: fall back to the next one, or fail."""
        await self._ensure_logged(sending)
        if not last:
            await self._fall_back(channel, failure.message)
            return None
        assert self._request is not None
        return await self._transition(
            Status.failed,
            attempt=failure.attempt or self._request.retry.max_attempts,
            error=self._all_reasons(failure.message),
        )

    async def _sent(
        self, channel: Channel, result: SendResult, sending: StatusEvent
    ) -> NotificationState:
        self._provider = result.provider
        self._advance(result.recorded_at)
        if not result.recorded:
            # The send step could not reach PostgreSQL: write what it could not.
            await self._ensure_logged(sending)
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

    async def _ensure_logged(self, event: StatusEvent) -> None:
        """Write ``event`` in case the send step could not (a retried write is a no-op)."""
        await self._step(StatusActivities.record_status, event)

    async def _cancelled(self) -> NotificationState:
        reason = self._cancel.reason if self._cancel else "cancelled"
        return await self._transition(Status.cancelled, attempt=self._attempts, detail=reason)

    async def _step(self, activity: Any, arg: Any) -> Any:
        """Run a cheap step as a local activity (no extra task queue round trip)."""
        return await workflow.execute_local_activity_method(
            activity, arg, start_to_close_timeout=LOCAL_STEP_TIMEOUT, retry_policy=LOCAL_STEP_RETRY
        )

    def _move(
        self,
        status: Status,
        *,
        attempt: int | None = None,
        error: str | None = None,
        visible: bool = False,
    ) -> None:
        """Change the status the workflow reports; ``visible`` also upserts the search
        attributes (a status that lasts beyond this workflow task)."""
        changed = status != self._status
        self._status = status
        if attempt is not None:
            self._attempts = attempt
        if error is not None:
            self._last_error = error
        if visible:
            self._visible = True
            workflow.upsert_search_attributes(
                search.on_transition(status, self._attempts, workflow.now() if changed else None)
            )

    def _advance(self, at: datetime | None) -> None:
        if at is not None and (self._clock is None or at > self._clock):
            self._clock = at

    def _event(self, status: Status, **fields: Any) -> StatusEvent:
        assert self._request is not None
        fields.setdefault("attempt", self._attempts)
        now = workflow.now()
        return StatusEvent(
            notification_id=self._request.notification_id,
            status=status,
            cycle=self._cycle,
            at=now if self._clock is None or self._clock < now else self._clock,
            leg=self._leg,
            **fields,
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
        """Move to ``status``, upsert the search attributes and append it to the log
        (``logged=False``: the send step already did).

        ``only_if`` is checked once earlier transitions are recorded; if it no longer
        holds (say, a retry note that lost the race with ``sent``), nothing changes.
        """
        async with self._transitions:
            if only_if is not None and not only_if():
                return self.status()
            # A clean send (sent on the first channel, nothing shown before) leaves the
            # UI's status unset: no search-attribute upsert, no visibility write. Every
            # other run shows where it is (``HeraldStatus``), ending with how it ended.
            clean = status is Status.sent and not self._visible and self._leg == 0
            self._move(status, attempt=attempt, error=error, visible=not clean)
            if logged:
                await self._step(
                    StatusActivities.record_status,
                    self._event(
                        status,
                        provider=provider,
                        provider_message_id=provider_message_id,
                        template_version=template_version,
                        detail=detail,
                        error=error,
                    ),
                )
            if status is Status.failed:
                await self._publish_failed()
            return self.status()

    async def _publish_failed(self) -> None:
        """Publish the full request and the last error to ``herald.failed`` (the core
        worker's RabbitMQ connection does it)."""
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
            task_queue=f"{request.task_queue_prefix}-core",
            start_to_close_timeout=PUBLISH_FAILED_TIMEOUT,
            retry_policy=PUBLISH_FAILED_RETRY,
        )

    async def _note(self, detail: str) -> None:
        """Log something that happened without changing the status."""
        await self._step(
            StatusActivities.record_status,
            self._event(self._status, detail=detail, annotation=True),
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

    # The regular send activity announces each attempt Temporal will retry, so the
    # query and the search attributes follow them (the first try never signals).
    @workflow.signal(unfinished_policy=workflow.HandlerUnfinishedPolicy.ABANDON)
    def attempt_failed(self, failure: AttemptFailed) -> None:
        """A provider attempt of the send activity failed and Temporal will retry it."""
        if (
            self._status in (Status.sending, Status.retrying)
            and self._cancel is None
            and failure.cycle == self._cycle
            and failure.leg == self._leg
            and failure.attempt >= self._attempts
        ):
            self._move(Status.retrying, attempt=failure.attempt, error=failure.error, visible=True)

    @workflow.signal(name=RECEIPT_SIGNAL)
    def receipt(self, receipt: ReceiptSignal) -> None:
        """The provider or the client's app reported what became of the message (the
        status log already has it; this only matters while waiting to escalate)."""
        if receipt.cycle == self._cycle:
            self._receipts.append((self._leg, receipt))

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
