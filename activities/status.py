"""Status activities: write transitions to the append-only log in PostgreSQL."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from herald import statuslog
from herald.contracts import AcceptedRecord, StatusEvent


class StatusActivities:
    """Built once per core worker around the process's engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @activity.defn(name="record_accepted")
    async def record_accepted(self, record: AcceptedRecord) -> None:
        """Make sure the notification row and its ``accepted`` event exist."""
        await statuslog.record_accepted(self._engine, record.notification)

    @activity.defn(name="record_status")
    async def record_status(self, event: StatusEvent) -> None:
        """Append one transition (a retried write is a no-op)."""
        await statuslog.record_event(self._engine, event)
