"""Digest activities: take requests into a digest (once each), send a closed digest as
one ordinary notification through the same start as the API's, and give its template
the members' data, read from PostgreSQL in pages (Temporal carries only ids).

Both are idempotent. A request is claimed by setting its ``digest_id`` only where none
is set yet (or it is already this digest's), in one statement, so however often a
claim is retried or a request signalled, it belongs to exactly one digest. The
notification a digest becomes has an id derived from the digest's, so a retried send
finds it started and starts nothing.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from herald import statuslog
from herald.contracts import (
    DigestClaim,
    DigestClaimed,
    DigestClose,
    NotificationRequest,
    RenderRequest,
    Status,
    StatusEvent,
)
from herald.db import Digest, Notification, single_statements
from herald.digests import digest_data, digest_of
from herald.intake import Conflict, Intake, Invalid, Submission, Unstarted
from herald.settings import Settings
from herald.tenants import TenantContext

log = logging.getLogger(__name__)

_CLAIM = text(
    """
    UPDATE notifications SET digest_id = :digest_id
    WHERE id = ANY(:ids) AND tenant_id = :tenant_id
      AND (digest_id IS NULL OR digest_id = :digest_id)
    RETURNING id, created_at
    """
).bindparams(bindparam("ids"))
# Members' data is read this many rows at a time: a page is a few MB at most.
ITEMS_PAGE = 100
_ITEMS = (
    select(Notification.id, Notification.created_at, Notification.data)
    .where(
        Notification.digest_id == bindparam("digest_id"),
        Notification.tenant_id == bindparam("tenant_id"),
        tuple_(Notification.created_at, Notification.id)
        > tuple_(bindparam("after_at"), bindparam("after_id")),
    )
    .order_by(Notification.created_at, Notification.id)
    .limit(ITEMS_PAGE)
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def digest_items(
    engine: AsyncEngine, tenant_id: uuid.UUID, digest_id: uuid.UUID
) -> list[dict[str, Any]]:
    """Each member's ``data``, oldest first, read a page at a time."""
    items: list[dict[str, Any]] = []
    after: tuple[datetime, uuid.UUID] = (_EPOCH, uuid.UUID(int=0))
    while True:
        params = {"digest_id": digest_id, "tenant_id": tenant_id}
        async with single_statements(engine) as conn:
            rows = (
                await conn.execute(_ITEMS, {**params, "after_at": after[0], "after_id": after[1]})
            ).all()
        items += [row.data or {} for row in rows]
        if len(rows) < ITEMS_PAGE:
            return items
        after = (rows[-1].created_at, rows[-1].id)


async def with_digest_items(
    engine: AsyncEngine, request: RenderRequest, notification_id: uuid.UUID | None
) -> RenderRequest:
    """The render request of a digest's notification with ``items`` (its members' data)
    added; any other request unchanged. ``notification_id`` is the notification being
    rendered: only a digest's own notification gets its members' data."""
    digest_id = digest_of(notification_id, request.data)
    if digest_id is None or "items" in request.data:
        return request  # not a digest, or one started when items travelled with it
    items = await digest_items(engine, request.tenant_id, digest_id)
    return request.model_copy(update={"data": {**request.data, "items": items}})


def _note(notification_id: uuid.UUID, at: datetime, detail: str, status: Status) -> StatusEvent:
    return StatusEvent(
        notification_id=notification_id,
        status=status,
        at=at,
        detail=detail,
    )


class DigestActivities:
    """Built once per core worker around the process's engine and Temporal client."""

    def __init__(self, engine: AsyncEngine, client: Client, settings: Settings) -> None:
        self._engine = engine
        self._settings = settings
        self._intake = Intake(client, engine, settings)

    def registered(self) -> list[Any]:
        """The activities a core worker registers for ``DigestWorkflow``."""
        return [self.claim_digest_items, self.send_digest]

    @activity.defn(name="claim_digest_items")
    async def claim_digest_items(self, claim: DigestClaim) -> DigestClaimed:
        """Make the requests members of this digest, unless another digest has them.

        Requests signalled whole (older runs) get their row and ``accepted`` event
        written first if the API has not yet (the same keyed writes); requests signalled
        by id whose row is not there yet are answered as ``unrecorded``. Each new member
        logs ``scheduled``.
        """
        ids = [item.notification_id for item in claim.items] + claim.notification_ids
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(Digest)
                .values(
                    id=claim.digest_id,
                    tenant_id=claim.tenant_id,
                    workflow_id=claim.workflow_id,
                    user_id=claim.user_id,
                    channel=claim.channel.value,
                    template=claim.template,
                    key=claim.key,
                    opened_at=claim.opened_at,
                    closes_at=claim.closes_at,
                    item_count=0,
                )
                .on_conflict_do_nothing()
            )
            for item in claim.items:
                await statuslog.write_accepted(conn, item)
            claimed = {
                row.id: row.created_at
                for row in await conn.execute(
                    _CLAIM,
                    {"digest_id": claim.digest_id, "tenant_id": claim.tenant_id, "ids": ids},
                )
            }
            unrecorded = await self._unrecorded(conn, claim, set(ids) - set(claimed))
        for notification_id, created_at in claimed.items():
            await statuslog.record_event(
                self._engine,
                _note(
                    notification_id,
                    # Not before its own acceptance, whichever clock wrote that.
                    max(created_at, datetime.now(UTC)),
                    f"in digest {claim.digest_id} (key {claim.key!r}), which closes at "
                    f"{claim.closes_at.isoformat()}",
                    Status.scheduled,
                ),
            )
        return DigestClaimed(
            notification_ids=[i for i in ids if i in claimed],
            unrecorded=[i for i in ids if i in unrecorded],
        )

    @staticmethod
    async def _unrecorded(
        conn: AsyncConnection, claim: DigestClaim, unclaimed: set[uuid.UUID]
    ) -> set[uuid.UUID]:
        """Those of ``unclaimed`` with no row (of this tenant) yet; the others belong to
        another digest."""
        if not unclaimed:
            return set()
        found = await conn.execute(
            select(Notification.id).where(
                Notification.id.in_(unclaimed), Notification.tenant_id == claim.tenant_id
            )
        )
        return unclaimed - set(found.scalars())

    @activity.defn(name="send_digest")
    async def send_digest(self, close: DigestClose) -> None:
        """Start the digest's one notification (``items`` oldest first, and ``count``)
        as the API starts any, then record the digest closed and tell its members."""
        count = len(close.item_ids)
        # The members' data is read when the template renders (``with_digest_items``);
        # a close from a run that carried it still sends it as it was.
        data = (
            {"items": close.items, "count": count}
            if close.items
            else digest_data(close.digest_id, count)
        )
        request = NotificationRequest(
            channel=close.channel,
            user_id=close.user_id,
            template=close.template,
            locale=close.locale,
            data=data,
        )
        # The digest's one notification has an id derived from the digest: a retry of
        # this step finds it started (replayed) and starts nothing.
        outcome = await self._intake.accept_one(
            TenantContext(close.tenant_id, close.tenant, test=close.test),
            Submission(request, notification_id=close.notification_id),
            request_id=close.request_id,
        )
        if isinstance(outcome, Unstarted):
            raise outcome.error
        if isinstance(outcome, Invalid | Conflict):
            raise ApplicationError(outcome.message, type="DigestNotSent", non_retryable=True)
        async with self._engine.begin() as conn:
            await conn.execute(
                update(Digest)
                .where(Digest.id == close.digest_id)
                .values(
                    closed_at=close.closed_at,
                    notification_id=close.notification_id,
                    item_count=count,
                )
            )
        waited = (
            f", waited for quiet hours until {close.waited_until.isoformat()}"
            if close.waited_until
            else ""
        )
        detail = (
            f"digest {close.digest_id} closed with {count} items{waited}; "
            f"sent as notification {close.notification_id}"
        )
        for notification_id in close.item_ids:
            event = _note(notification_id, datetime.now(UTC), detail, Status.scheduled)
            await statuslog.record_event(
                self._engine, event.model_copy(update={"annotation": True, "at": close.closed_at})
            )
        log.info(
            "digest sent",
            extra={
                "digest_id": str(close.digest_id),
                "notification_id": str(close.notification_id),
                "items": count,
            },
        )
