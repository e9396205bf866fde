"""Digest activities: take requests into a digest (once each), and send a closed digest
as one ordinary notification through the same start as the API's.

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

from sqlalchemy import bindparam, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.client import Client

from herald import statuslog, submission
from herald.contracts import (
    DigestClaim,
    DigestClaimed,
    DigestClose,
    NotificationRequest,
    Status,
    StatusEvent,
)
from herald.db import Digest
from herald.settings import Settings

log = logging.getLogger(__name__)

_CLAIM = text(
    """
    UPDATE notifications SET digest_id = :digest_id
    WHERE id = ANY(:ids) AND tenant_id = :tenant_id
      AND (digest_id IS NULL OR digest_id = :digest_id)
    RETURNING id
    """
).bindparams(bindparam("ids"))


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
        self._client = client
        self._settings = settings

    def registered(self) -> list[Any]:
        """The activities a core worker registers for ``DigestWorkflow``."""
        return [self.claim_digest_items, self.send_digest]

    @activity.defn(name="claim_digest_items")
    async def claim_digest_items(self, claim: DigestClaim) -> DigestClaimed:
        """Make the requests members of this digest, unless another digest has them.

        Each request's row and ``accepted`` event are written first if the API has not
        yet (the same keyed writes), then each new member logs ``scheduled``.
        """
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
            claimed = set(
                (
                    await conn.execute(
                        _CLAIM,
                        {
                            "digest_id": claim.digest_id,
                            "tenant_id": claim.tenant_id,
                            "ids": [item.notification_id for item in claim.items],
                        },
                    )
                ).scalars()
            )
        members = [item for item in claim.items if item.notification_id in claimed]
        for item in members:
            await statuslog.record_event(
                self._engine,
                _note(
                    item.notification_id,
                    # Not before its own acceptance, whichever clock wrote that.
                    max(item.created_at, datetime.now(UTC)),
                    f"in digest {claim.digest_id} (key {claim.key!r}), which closes at "
                    f"{claim.closes_at.isoformat()}",
                    Status.scheduled,
                ),
            )
        return DigestClaimed(notification_ids=[item.notification_id for item in members])

    @activity.defn(name="send_digest")
    async def send_digest(self, close: DigestClose) -> None:
        """Start the digest's one notification (``items`` oldest first, and ``count``)
        as the API starts any, then record the digest closed and tell its members."""
        request = NotificationRequest(
            channel=close.channel,
            user_id=close.user_id,
            template=close.template,
            locale=close.locale,
            data={"items": close.items, "count": len(close.items)},
        )
        notification = submission.build_input(
            self._settings,
            notification_id=close.notification_id,
            tenant_id=close.tenant_id,
            tenant=close.tenant,
            request=request,
            request_id=close.request_id,
        )
        started = await submission.accept(self._client, self._engine, self._settings, notification)
        if not started:
            # A retry of this step: the first attempt started it (and wrote its row).
            await statuslog.record_accepted(self._engine, notification)
        async with self._engine.begin() as conn:
            await conn.execute(
                update(Digest)
                .where(Digest.id == close.digest_id)
                .values(
                    closed_at=close.closed_at,
                    notification_id=close.notification_id,
                    item_count=len(close.items),
                )
            )
        waited = (
            f", waited for quiet hours until {close.waited_until.isoformat()}"
            if close.waited_until
            else ""
        )
        detail = (
            f"digest {close.digest_id} closed with {len(close.items)} items{waited}; "
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
                "items": len(close.items),
            },
        )
