"""``DigestWorkflow``: requests of one user with the same channel, template and digest
key, collected for a window and sent as one notification.

One workflow id per (tenant, user, channel, template, key) (``herald.digests``); each
run of it is one digest window. The API signal-with-starts it for every request (signal
``add``): a running digest takes the request, a closed one is started again.

How a window ends, and why no request is lost or doubled:

- The window opens with the run's first request and closes ``window_seconds`` later, or
  at once when ``max_items`` members are in. Requests are taken in ("claimed") in
  batches by ``claim_digest_items``, which gives each request to exactly one digest in
  PostgreSQL: a request signalled twice (a client retrying after a lost answer), even
  into a later window, joins only the first digest that claimed it.
- A request arrives as its id (``herald.digests``): its data stays in its notification
  row. A request whose row is not written yet (its acceptance still under way) is
  claimed again a moment later; one still without a row well after the window closed
  was never accepted (its caller crashed between the signal and the row) and is let go.
- Once closed, the run takes no more members. It waits out the user's quiet hours if the
  window closed inside them, then ``send_digest`` starts the one notification (id
  derived from the digest id: a retried or replayed step starts nothing new) with the
  digest's id and ``count``; its template gets ``items`` (each member's ``data``, oldest
  first), read from PostgreSQL when it renders. Nothing that grows with the members'
  data passes through Temporal.
- Requests that arrive after the close stay pending in the run. The run ends only with
  nothing pending: otherwise it continues as new with those requests as the first of
  the next window. Temporal refuses to complete (or continue) a run while a signal it
  has not yet shown the workflow is waiting, and hands the signal to the run first; a
  signal after the run has ended starts a new run. So every request reaches a window,
  and the claim makes it one window.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.digests import DigestActivities
    from activities.recipients import RecipientActivities
    from herald.contracts import (
        DIGEST_ITEMS_LIMIT,
        DigestClaim,
        DigestClaimed,
        DigestClose,
        DigestInput,
        DigestItem,
        DigestOutcome,
        DigestState,
        Priority,
        Recipient,
        RecipientLookup,
    )
    from herald.digests import digest_id_for, digest_notification_id
    from herald.quiet import quiet_until

# Steps that only touch PostgreSQL (and Temporal, for the send) retry until it is back.
STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
STEP_TIMEOUT = timedelta(seconds=30)
# A request whose row is not there yet is claimed again this often, and given up this
# long after the window closed.
UNRECORDED_RETRY = timedelta(seconds=2)
UNRECORDED_GRACE = timedelta(seconds=60)


@workflow.defn
class DigestWorkflow:
    """Collects one digest key's requests for a window and sends them as one notification."""

    def __init__(self) -> None:
        self._pending: list[DigestItem] = []
        self._seen: set[uuid.UUID] = set()
        self._members: list[DigestItem] = []
        # Signalled, but their rows were not written yet when last claimed.
        self._unrecorded: list[DigestItem] = []
        self._digest_id: uuid.UUID | None = None
        self._closes_at: datetime | None = None
        self._closed = False
        self._waiting_until: datetime | None = None

    @workflow.run
    async def run(self, digest: DigestInput) -> DigestOutcome:
        """Collect, close, wait out quiet hours, send; hand late requests to the next run."""
        for item in digest.pending:
            self.add(item)
        info = workflow.info()
        digest_id = self._digest_id = digest_id_for(info.workflow_id, info.run_id)
        opened_at = workflow.now()
        closes_at = self._closes_at = opened_at + timedelta(seconds=digest.window_seconds)
        limit = min(digest.max_items or DIGEST_ITEMS_LIMIT, DIGEST_ITEMS_LIMIT)
        workflow.set_current_details(
            f"collecting until {closes_at.isoformat()} (at most {limit} requests)"
        )
        while True:
            if self._pending:
                await self._claim(digest, digest_id, opened_at, closes_at, limit)
            remaining = closes_at - workflow.now()
            if len(self._members) >= limit or remaining <= timedelta(0):
                break
            try:
                await workflow.wait_condition(
                    lambda: bool(self._pending),
                    timeout=min(remaining, UNRECORDED_RETRY) if self._unrecorded else remaining,
                    timeout_summary="digest window closes",
                )
            except TimeoutError:
                self._retry_unrecorded()
        await self._settle_unrecorded(digest, digest_id, opened_at, closes_at, limit)
        self._closed = True
        notification_id = None
        if self._members:
            notification_id = await self._send(digest, digest_id)
        # Late requests open the next window; a run ends only with none waiting.
        await workflow.wait_condition(workflow.all_handlers_finished)
        carried = len(self._pending)
        if self._pending:
            workflow.continue_as_new(
                digest.model_copy(update={"pending": self._pending, "number": digest.number + 1})
            )
        return DigestOutcome(
            digest_id=digest_id,
            count=len(self._members),
            notification_id=notification_id,
            carried_over=carried,
        )

    async def _claim(
        self,
        digest: DigestInput,
        digest_id: uuid.UUID,
        opened_at: datetime,
        closes_at: datetime,
        limit: int,
    ) -> None:
        """Take in what arrived, up to the limit; the rest waits for the next window."""
        room = limit - len(self._members)
        batch, self._pending = self._pending[:room], self._pending[room:]
        claimed: DigestClaimed = await workflow.execute_local_activity_method(
            DigestActivities.claim_digest_items,
            DigestClaim(
                digest_id=digest_id,
                workflow_id=workflow.info().workflow_id,
                tenant_id=digest.tenant_id,
                user_id=digest.user_id,
                channel=digest.channel,
                template=digest.template,
                key=digest.key,
                opened_at=opened_at,
                closes_at=closes_at,
                items=[item.notification for item in batch if item.notification is not None],
                notification_ids=[item.id for item in batch if item.notification is None],
            ),
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=STEP_RETRY,
        )
        members = set(claimed.notification_ids)
        unrecorded = set(claimed.unrecorded)
        # Members keep only their ids and small facts: their data is in PostgreSQL now.
        self._members += [item.facts for item in batch if item.id in members]
        self._unrecorded += [item for item in batch if item.id in unrecorded]

    def _retry_unrecorded(self) -> None:
        """Claim the requests that had no row yet again, ahead of newer ones."""
        self._pending, self._unrecorded = self._unrecorded + self._pending, []

    async def _settle_unrecorded(
        self,
        digest: DigestInput,
        digest_id: uuid.UUID,
        opened_at: datetime,
        closes_at: datetime,
        limit: int,
    ) -> None:
        """After the window: claim the requests still without a row for a while, then let
        go of those that never got one (never accepted; a retry signals them anew)."""
        if not self._unrecorded:
            return
        give_up = closes_at + UNRECORDED_GRACE
        while self._unrecorded and len(self._members) < limit and workflow.now() < give_up:
            await workflow.sleep(UNRECORDED_RETRY, summary="waiting for requests' rows")
            batch, self._unrecorded = self._unrecorded, []
            late, self._pending = self._pending, batch
            await self._claim(digest, digest_id, opened_at, closes_at, limit)
            self._pending += late
        for item in self._unrecorded:
            workflow.logger.warning(
                "request never recorded; let go", extra={"notification_id": str(item.id)}
            )
            self._seen.discard(item.id)
        self._unrecorded = []

    async def _send(self, digest: DigestInput, digest_id: uuid.UUID) -> uuid.UUID:
        """Wait out the user's quiet hours, then start the digest's notification."""
        closed_at = workflow.now()
        recipient: Recipient = await workflow.execute_local_activity_method(
            RecipientActivities.load_recipient,
            RecipientLookup(
                tenant_id=digest.tenant_id,
                user_id=digest.user_id,
                channel=digest.channel,
                template=digest.template,
            ),
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=STEP_RETRY,
        )
        until = quiet_until(
            recipient.quiet_hours, recipient.timezone, workflow.now(), Priority.normal
        )
        if until is not None:
            self._waiting_until = until
            workflow.set_current_details(
                f"closed; waiting for quiet hours until {until.isoformat()}"
            )
            await workflow.sleep(until - workflow.now(), summary="quiet hours end")
        workflow.set_current_details(f"closed with {len(self._members)} requests; sending")
        first = self._members[0]
        notification_id = digest_notification_id(digest_id)
        await workflow.execute_activity_method(
            DigestActivities.send_digest,
            DigestClose(
                digest_id=digest_id,
                notification_id=notification_id,
                tenant_id=digest.tenant_id,
                tenant=digest.tenant,
                user_id=digest.user_id,
                channel=digest.channel,
                template=digest.template,
                locale=first.locale,
                item_ids=[item.id for item in self._members],
                closed_at=closed_at,
                waited_until=until,
                request_id=first.request_id,
                test=digest.test,
            ),
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=STEP_RETRY,
        )
        return notification_id

    @workflow.signal
    def add(self, item: DigestItem) -> None:
        """A request joins this digest, or the next if this one has closed."""
        if item.id in self._seen:
            return  # the same request signalled again
        self._seen.add(item.id)
        self._pending.append(item)

    @workflow.query
    def status(self) -> DigestState:
        """How many requests are in, how many wait, and when the window closes."""
        return DigestState(
            digest_id=self._digest_id or uuid.UUID(int=0),
            members=len(self._members),
            pending=len(self._pending),
            closes_at=self._closes_at,
            closed=self._closed,
            waiting_until=self._waiting_until,
        )
