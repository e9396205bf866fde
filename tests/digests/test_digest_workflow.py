"""``DigestWorkflow`` on Temporal's time-skipping test server with fake activities (the
workflow runs in Temporal's sandbox here): a window collects requests in order; max_items
closes it early and hands the rest to the next window; a request signalled twice, or
claimed by another digest, is one item; a request arriving while the digest is being
sent, or after it ended, opens the next one; a digest closing inside quiet hours waits
until they end; requests travel as ids (their data stays in their rows), a request whose
row comes late is still taken in, one that never gets a row is let go."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from herald.contracts import (
    Channel,
    DigestClaim,
    DigestClaimed,
    DigestClose,
    DigestOutcome,
    DigestSpec,
    NotificationInput,
    QuietHours,
    Recipient,
    RecipientLookup,
)
from herald.digests import digest_notification_id, digest_workflow_id, signal_digest
from herald.settings import Settings
from tests.workflows.test_workflow_timeskipping import env  # the time-skipping server
from workflows.digest import DigestWorkflow

pytestmark = [pytest.mark.fast, pytest.mark.timeout(120)]
__all__ = ["env"]

WINDOW = 600


@dataclass
class Sent:
    """One ``send_digest`` call, at workflow time ``at``."""

    close: DigestClose
    at: datetime


@dataclass
class FakeDigestSteps:
    """The digest's activities: rows and claims kept in memory as PostgreSQL keeps them."""

    recipient: Recipient = field(default_factory=lambda: Recipient(address="ada@example.com"))
    # Each request's row (its data), written by whoever accepted it.
    rows: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    owner: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)
    # Set to hold ``send_digest`` until the test lets it go.
    hold_send: asyncio.Event | None = None
    sending: asyncio.Event = field(default_factory=asyncio.Event)

    @activity.defn(name="claim_digest_items")
    async def claim_digest_items(self, claim: DigestClaim) -> DigestClaimed:
        """Each request goes to the first digest that claims it, once its row is there."""
        for item in claim.items:  # signalled whole: the claim writes the row
            self.rows.setdefault(item.notification_id, item.data)
        ids, unrecorded = [], []
        for notification_id in [i.notification_id for i in claim.items] + claim.notification_ids:
            if notification_id not in self.rows:
                unrecorded.append(notification_id)
            elif self.owner.setdefault(notification_id, claim.digest_id) == claim.digest_id:
                ids.append(notification_id)
        return DigestClaimed(notification_ids=ids, unrecorded=unrecorded)

    @activity.defn(name="load_recipient")
    async def load_recipient(self, lookup: RecipientLookup) -> Recipient:
        """The scripted recipient."""
        return self.recipient

    @activity.defn(name="send_digest")
    async def send_digest(self, close: DigestClose) -> None:
        """Keep what would be sent (a retry of the same digest is the same notification)."""
        self.sending.set()
        if self.hold_send is not None:
            await self.hold_send.wait()
        if all(s.close.notification_id != close.notification_id for s in self.sent):
            self.sent.append(Sent(close, activity.info().started_time))

    def items(self) -> list[list[Any]]:
        """Each digest's members' ``n``, read from their rows as the render step does."""
        return [[self.rows[i]["n"] for i in s.close.item_ids] for s in self.sent]


@asynccontextmanager
async def running(env: WorkflowEnvironment, steps: FakeDigestSteps) -> AsyncIterator[Settings]:
    """A core worker with the fakes; yields settings naming its task queue."""
    settings = Settings(task_queue_prefix=f"dg-{uuid.uuid4().hex[:8]}")
    async with Worker(
        env.client,
        task_queue=f"{settings.task_queue_prefix}-core",
        workflows=[DigestWorkflow],
        activities=[steps.claim_digest_items, steps.load_recipient, steps.send_digest],
    ):
        yield settings


@dataclass
class Requests:
    """Requests of one user, template and digest key."""

    client: Client
    settings: Settings
    now: datetime
    # The accepted rows: ``send`` writes each request's after its signal, as the API does.
    rows: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    key: str = "comments"
    tenant_id: uuid.UUID = field(default_factory=uuid.uuid4)
    window: int = WINDOW
    max_items: int | None = None

    def make(self, n: int, **fields: Any) -> NotificationInput:
        return NotificationInput(
            notification_id=fields.pop("notification_id", uuid.uuid4()),
            tenant_id=self.tenant_id,
            tenant="acme",
            channel=Channel.email,
            user_id="ada",
            template="activity",
            data={"n": n},
            created_at=self.now,
            task_queue_prefix=self.settings.task_queue_prefix,
            digest=DigestSpec(key=self.key, window_seconds=self.window, max_items=self.max_items),
            **fields,
        )

    handle: WorkflowHandle[Any, Any] | None = None

    async def send(self, request: NotificationInput, *, recorded: bool = True) -> NotificationInput:
        self.handle = await signal_digest(self.client, self.settings, request)
        if recorded:
            self.rows[request.notification_id] = request.data
        return request

    async def result(self) -> DigestOutcome:
        """The outcome of the digest chain's last run (time skips while waiting for it:
        the handle comes from the test environment's client)."""
        assert self.handle is not None
        assert self.handle.id == digest_workflow_id(self.make(0))
        return DigestOutcome.model_validate(await self.handle.result())


async def test_a_window_collects_every_request_in_order_and_sends_once_when_it_closes(
    env: WorkflowEnvironment,
) -> None:
    steps = FakeDigestSteps()
    async with running(env, steps) as settings:
        requests = Requests(env.client, settings, await env.get_current_time(), rows=steps.rows)
        opened = await env.get_current_time()
        sent = [await requests.send(requests.make(n)) for n in range(50)]
        outcome = await requests.result()

    assert steps.items() == [list(range(50))]
    (only,) = steps.sent
    assert only.close.item_ids == [r.notification_id for r in sent]
    assert only.close.notification_id == digest_notification_id(only.close.digest_id)
    assert outcome.count == 50 and outcome.notification_id == only.close.notification_id
    # Sent when the window closed, in workflow time (ten minutes took no real time).
    assert timedelta(seconds=WINDOW) <= only.at - opened < timedelta(seconds=WINDOW + 30)


async def test_max_items_closes_early_and_the_rest_open_the_next_window(
    env: WorkflowEnvironment,
) -> None:
    steps = FakeDigestSteps()
    async with running(env, steps) as settings:
        requests = Requests(
            env.client, settings, await env.get_current_time(), max_items=5, rows=steps.rows
        )
        opened = await env.get_current_time()
        for n in range(7):
            await requests.send(requests.make(n))
        await requests.result()

    assert steps.items() == [[0, 1, 2, 3, 4], [5, 6]]
    first, second = steps.sent
    assert first.at - opened < timedelta(seconds=WINDOW)  # did not wait for the window
    assert second.at - opened >= timedelta(seconds=WINDOW)
    assert first.close.digest_id != second.close.digest_id


async def test_a_request_signalled_twice_or_claimed_by_another_digest_is_one_item(
    env: WorkflowEnvironment,
) -> None:
    steps = FakeDigestSteps()
    elsewhere = uuid.uuid4()
    async with running(env, steps) as settings:
        requests = Requests(env.client, settings, await env.get_current_time(), rows=steps.rows)
        taken = requests.make(99)
        steps.owner[taken.notification_id] = uuid.uuid4()  # another digest has it
        twice = requests.make(1, notification_id=elsewhere)
        await requests.send(requests.make(0))
        await requests.send(twice)
        await requests.send(twice)
        await requests.send(taken)
        await requests.send(requests.make(2))
        await requests.result()

    assert steps.items() == [[0, 1, 2]]


async def test_a_request_while_the_digest_is_being_sent_opens_the_next_one(
    env: WorkflowEnvironment,
) -> None:
    steps = FakeDigestSteps(hold_send=asyncio.Event())
    async with running(env, steps) as settings:
        requests = Requests(
            env.client, settings, await env.get_current_time(), window=60, rows=steps.rows
        )
        await requests.send(requests.make(1))
        chain = asyncio.create_task(requests.result())  # lets time skip to the close
        await asyncio.wait_for(steps.sending.wait(), 30)
        await requests.send(requests.make(2))  # the first digest has closed
        assert steps.hold_send is not None
        steps.hold_send.set()
        await chain

    assert steps.items() == [[1], [2]]


async def test_a_request_after_the_digest_ended_opens_a_new_one(env: WorkflowEnvironment) -> None:
    steps = FakeDigestSteps()
    async with running(env, steps) as settings:
        requests = Requests(
            env.client, settings, await env.get_current_time(), window=60, rows=steps.rows
        )
        await requests.send(requests.make(1))
        first = await requests.result()
        await requests.send(requests.make(2))
        second = await requests.result()

    assert steps.items() == [[1], [2]]
    assert first.digest_id != second.digest_id


async def test_a_digest_closing_inside_quiet_hours_waits_until_they_end(
    env: WorkflowEnvironment,
) -> None:
    now = (await env.get_current_time()).astimezone(UTC)
    start, end = now - timedelta(hours=1), now + timedelta(hours=3)
    steps = FakeDigestSteps(
        recipient=Recipient(
            address="ada@example.com",
            quiet_hours=QuietHours(start=f"{start:%H:%M}", end=f"{end:%H:%M}"),
            timezone="UTC",
        )
    )
    async with running(env, steps) as settings:
        requests = Requests(env.client, settings, now, window=60, rows=steps.rows)
        await requests.send(requests.make(1))
        await requests.result()

    (only,) = steps.sent
    quiet_end = end.replace(second=0, microsecond=0)
    assert quiet_end <= only.at < quiet_end + timedelta(seconds=30)
    assert only.close.waited_until == quiet_end


async def test_requests_travel_as_ids_and_one_without_a_row_yet_is_taken_in_when_it_comes(
    env: WorkflowEnvironment,
) -> None:
    steps = FakeDigestSteps()
    async with running(env, steps) as settings:
        requests = Requests(env.client, settings, await env.get_current_time(), rows=steps.rows)
        await requests.send(requests.make(0))
        late = await requests.send(requests.make(1), recorded=False)
        await requests.send(requests.make(2))
        history = requests.handle
        assert history is not None
        await asyncio.sleep(1)
        steps.rows[late.notification_id] = late.data  # its acceptance finishes
        await requests.result()
        events = [e async for e in history.fetch_history_events()]

    assert sorted(steps.items()[0]) == [0, 1, 2]
    # The signals carried ids, never the requests' data.
    signals = [e for e in events if e.HasField("workflow_execution_signaled_event_attributes")]
    assert len(signals) == 3
    assert all(b'"data"' not in e.SerializeToString() for e in signals)


async def test_a_request_that_never_gets_a_row_is_let_go_and_the_others_are_sent(
    env: WorkflowEnvironment,
) -> None:
    steps = FakeDigestSteps()
    async with running(env, steps) as settings:
        requests = Requests(env.client, settings, await env.get_current_time(), rows=steps.rows)
        await requests.send(requests.make(0))
        await requests.send(requests.make(1), recorded=False)  # its caller crashed
        outcome = await requests.result()

    assert steps.items() == [[0]]
    assert outcome.count == 1
