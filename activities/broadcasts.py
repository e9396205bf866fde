"""Broadcast activities: write the broadcast's row, start one page of its recipients'
notifications, record its end. They run on the core worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from herald import broadcasts
from herald.contracts import (
    Audience,
    BroadcastDefinition,
    BroadcastEnd,
    FanOutPage,
    FanOutResult,
    NotificationRequest,
    recipient_notification_id,
)
from herald.db import Broadcast
from herald.intake import (
    Accepted,
    Conflict,
    Intake,
    Invalid,
    Outcome,
    Replayed,
    Submission,
    Unstarted,
)
from herald.settings import Settings
from herald.tenants import TenantContext

# The page's starts can take a few seconds under load; a heartbeat this often lets
# Temporal see a killed worker within the workflow's heartbeat timeout.
HEARTBEAT_SECONDS = 1.0

_DEFINITION = select(
    Broadcast.channel,
    Broadcast.template,
    Broadcast.locale,
    Broadcast.data,
    Broadcast.fallback,
    Broadcast.audience,
    Broadcast.cancel_requested_at,
    Broadcast.test,
)


@asynccontextmanager
async def _heartbeating() -> AsyncIterator[None]:
    """Heartbeat in the background while the body runs."""

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(HEARTBEAT_SECONDS)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


def _page_error(outcome: Outcome) -> Exception:
    """What fails the page's attempt: a start Temporal refused for now is retried; a
    recipient whose request can never be accepted stops the broadcast with the reason."""
    match outcome:
        case Unstarted(error=error):
            return error
        case Invalid(field=field, message=message):
            return ApplicationError(
                f"{field}: {message}", type="InvalidBroadcast", non_retryable=True
            )
        case Conflict(message=message):
            return ApplicationError(message, type="BroadcastConflict", non_retryable=True)
    return ApplicationError(f"unexpected outcome {outcome!r}")


class BroadcastActivities:
    """Built once per core worker around the process's engine and Temporal client."""

    def __init__(self, engine: AsyncEngine, client: Client, settings: Settings) -> None:
        self._engine = engine
        self._settings = settings
        self._intake = Intake(client, engine, settings)

    @property
    def activities(self) -> list[Any]:
        """What the core worker registers."""
        return [self.record_broadcast, self.fan_out_page, self.end_broadcast]

    @activity.defn(name="record_broadcast")
    async def record_broadcast(self, definition: BroadcastDefinition) -> None:
        """Make sure the broadcast's row exists (the API usually wrote it already)."""
        await broadcasts.write_broadcast(self._engine, definition)

    @activity.defn(name="fan_out_page")
    async def fan_out_page(self, page: FanOutPage) -> FanOutResult:
        """Start the notifications of the next ``page.limit`` recipients after the cursor.

        Each recipient's notification id is derived from the broadcast and the user, so a
        retried page starts again only those the failed attempt had not: the others are
        already started and counted as such. A cancel asked for in the meantime (the
        API writes it before it signals) stops the page before it starts anyone.
        """
        async with self._engine.connect() as conn:
            row = (await conn.execute(_DEFINITION.where(Broadcast.id == page.broadcast_id))).first()
            if row is None:
                raise ApplicationError(
                    f"broadcast {page.broadcast_id} has no row", type="BroadcastMissing"
                )
            if row.cancel_requested_at is not None:
                return FanOutResult(last_user_id=page.after, cancelled=True)
            audience = Audience.model_validate(row.audience)
            users = await broadcasts.audience_page(
                conn, page.broadcast_id, page.tenant_id, audience, page.after, page.limit
            )
        if not users:
            return FanOutResult(last_user_id=page.after, exhausted=True)
        first = NotificationRequest(
            channel=row.channel,
            user_id=users[0],
            template=row.template,
            locale=row.locale,
            data=row.data,
            fallback=row.fallback or [],
        )
        # Validated once for the page; every recipient differs only by user id.
        requests = [
            Submission(
                first.model_copy(update={"user_id": user_id}),
                notification_id=recipient_notification_id(page.broadcast_id, user_id),
                broadcast_id=page.broadcast_id,
            )
            for user_id in users
        ]
        tenant = TenantContext(page.tenant_id, page.tenant, test=row.test)
        async with _heartbeating():
            outcomes = await self._intake.accept(
                tenant, requests, request_id=page.request_id, per_second=page.per_second
            )
        failed = [outcome for outcome in outcomes if not isinstance(outcome, Accepted | Replayed)]
        if failed:
            # Retried as a whole: those started by now count as started next time.
            raise _page_error(failed[0])
        return FanOutResult(
            last_user_id=users[-1],
            started=len(users),
            new=sum(isinstance(outcome, Accepted) for outcome in outcomes),
            exhausted=len(users) < page.limit,
        )

    @activity.defn(name="end_broadcast")
    async def end_broadcast(self, end: BroadcastEnd) -> None:
        """Record the broadcast as completed or cancelled."""
        await broadcasts.end_broadcast(self._engine, end)
