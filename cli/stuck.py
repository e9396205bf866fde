"""``herald stuck``: notifications that have been sending or retrying for too long, found
through their search attributes, each with its last error and a Temporal UI link."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client, WorkflowExecutionDescription

from herald import search
from herald.contracts import Status
from herald.settings import Settings

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
STUCK_STATUSES = (Status.sending, Status.retrying)


def parse_duration(text: str) -> timedelta:
    """``90s``, ``10m``, ``1h30m``, ``2d`` → a timedelta; ``ValueError`` otherwise."""
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION_PART.findall(compact)
    if not compact or "".join(number + unit for number, unit in parts) != compact:
        raise ValueError(f"{text!r} is not a duration like 90s, 10m, 1h30m or 2d")
    return timedelta(seconds=sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts))


def stuck_query(cutoff: datetime) -> str:
    """The visibility query: still running, sending or retrying since before ``cutoff``."""
    statuses = ", ".join(f'"{status.value}"' for status in STUCK_STATUSES)
    return (
        f'ExecutionStatus = "Running" AND {search.STATUS.name} IN ({statuses}) '
        f'AND {search.STATUS_SINCE.name} < "{cutoff.astimezone(UTC).isoformat()}"'
    )


def ui_link(settings: Settings, workflow_id: str, run_id: str) -> str:
    """The page of one workflow run in the Temporal UI."""
    namespace, workflow = quote(settings.temporal_namespace), quote(workflow_id)
    base = settings.temporal_ui_url.rstrip("/")
    return f"{base}/namespaces/{namespace}/workflows/{workflow}/{run_id}/history"


@dataclass(frozen=True)
class StuckNotification:
    """One notification an operator should look at."""

    workflow_id: str
    status: str
    channel: str
    template: str
    tenant: str
    attempts: int
    since: datetime | None
    last_error: str | None
    activity_state: str | None
    ui_url: str

    @property
    def notification_id(self) -> str:
        """The id the REST API knows it by."""
        return self.workflow_id.removeprefix("notification-")


def _pending_send(description: WorkflowExecutionDescription) -> tuple[str | None, str | None]:
    """The send activity's last error and state (``scheduled`` with no error: no worker)."""
    for pending in description.raw_description.pending_activities:
        error = pending.last_failure.message if pending.HasField("last_failure") else None
        state = PendingActivityState.Name(pending.state).removeprefix("PENDING_ACTIVITY_STATE_")
        return error or None, state.lower()
    return None, None


async def find_stuck(
    client: Client, settings: Settings, older_than: timedelta, limit: int = 100
) -> list[StuckNotification]:
    """Running notifications whose status has been sending or retrying longer than
    ``older_than``, oldest first."""
    query = stuck_query(datetime.now(UTC) - older_than)
    found: list[StuckNotification] = []
    async for execution in client.list_workflows(query, limit=limit):
        attributes = execution.typed_search_attributes
        description = await client.get_workflow_handle(
            execution.id, run_id=execution.run_id
        ).describe()
        last_error, state = _pending_send(description)
        found.append(
            StuckNotification(
                workflow_id=execution.id,
                status=attributes.get(search.STATUS) or "",
                channel=attributes.get(search.CHANNEL) or "",
                template=attributes.get(search.TEMPLATE) or "",
                tenant=attributes.get(search.TENANT) or "",
                attempts=attributes.get(search.ATTEMPTS) or 0,
                since=attributes.get(search.STATUS_SINCE),
                last_error=last_error,
                activity_state=state,
                ui_url=ui_link(settings, execution.id, execution.run_id),
            )
        )
    return sorted(found, key=lambda row: row.since or datetime.min.replace(tzinfo=UTC))
