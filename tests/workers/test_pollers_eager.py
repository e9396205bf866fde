"""The channel workers' poller settings, and eager start: an API with ``HERALD_API_EAGER``
runs an email worker and hands it the notifications it starts."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.api.enums.v1 import EventType
from temporalio.worker import PollerBehaviorSimpleMaximum

from devtools.sinks import Sinks
from herald.contracts import Channel, NotificationRequest
from herald.ports import free_port
from herald.settings import Settings
from herald.submission import build_input, start_notification
from herald.temporal import connect
from tests.harness import Stack, new_run_id, new_tenant, wait_for_status
from workers.main import channel_slots


@pytest.mark.fast
def test_channel_slots_carry_the_poller_settings() -> None:
    settings = Settings(
        worker_workflow_task_polls=8,
        worker_nonsticky_poll_ratio=0.5,
        worker_activity_task_polls=3,
    )
    slots = channel_slots(10, settings)
    assert slots["workflow_task_poller_behavior"] == PollerBehaviorSimpleMaximum(8)
    assert slots["nonsticky_to_sticky_poll_ratio"] == 0.5
    assert slots["activity_task_poller_behavior"] == PollerBehaviorSimpleMaximum(3)
    assert slots["max_concurrent_workflow_tasks"] == 20


@pytest.mark.fast
def test_the_default_pollers_are_the_sdks() -> None:
    slots = channel_slots(10, Settings())
    assert slots["workflow_task_poller_behavior"] == PollerBehaviorSimpleMaximum(5)
    assert slots["nonsticky_to_sticky_poll_ratio"] == 0.2
    assert slots["activity_task_poller_behavior"] == PollerBehaviorSimpleMaximum(5)


@pytest.mark.fast
@pytest.mark.parametrize(
    "bad",
    [
        {"worker_workflow_task_polls": 1},  # the SDK needs two: sticky and not
        {"worker_nonsticky_poll_ratio": 0},
        {"worker_nonsticky_poll_ratio": 1.5},
        {"worker_activity_task_polls": 0},
    ],
)
def test_poller_settings_out_of_range_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)


class RecordingClient:
    """Stands in for a Temporal client: keeps the keyword arguments of each start."""

    def __init__(self) -> None:
        self.starts: list[dict[str, Any]] = []

    async def start_workflow(self, *args: Any, **kwargs: Any) -> None:
        self.starts.append(kwargs)


@pytest.mark.fast
@pytest.mark.parametrize("eager", [False, True])
async def test_a_notification_start_asks_for_eager_start_when_the_setting_is_on(
    eager: bool,
) -> None:
    settings = Settings(api_eager=eager)
    notification = build_input(
        settings,
        notification_id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        tenant="acme",
        request=NotificationRequest(channel=Channel.email, user_id="u-1", template="welcome"),
    )
    client = RecordingClient()
    assert await start_notification(client, settings, notification)  # type: ignore[arg-type]
    assert client.starts[0]["request_eager_start"] is eager


async def test_an_eager_api_sends_email_without_an_email_worker(
    settings: Settings, sinks: Sinks, tmp_path: Path
) -> None:
    eager = settings.model_copy(
        update={
            "api_eager": True,
            "task_queue_prefix": f"eager-{new_run_id()}",
            "api_port": free_port(),
        }
    )
    # No email worker process: only the API's own worker can run the email queue.
    stack = Stack(eager, tmp_path / "logs", queues=("core",), receipts=False).start()
    try:
        tenant = await new_tenant(stack, f"eager-{new_run_id()}")
        user = await tenant.user()
        key = await tenant.template("email", "Hello eagerly", "Eager")
        nid = await tenant.send("email", user["id"], key)

        final = await wait_for_status(tenant.client, nid, timeout=60)
        assert final["status"] == "sent"
        assert [m.subject for m in sinks.state.received("email", to=user["email"])] == ["Eager"]
        await tenant.client.aclose()

        # Eagerly started: the first workflow task was started in the same write as the
        # workflow (consecutive task ids), not polled from the queue in a later one (whose
        # ids come after those of the write's other tasks).
        client = await connect(eager)
        history = await client.get_workflow_handle(f"notification-{nid}").fetch_history()
        first = history.events[:3]
        assert [e.event_type for e in first] == [
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
            EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
            EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
        ]
        assert [e.task_id - first[0].task_id for e in first] == [0, 1, 2]
    finally:
        stack.stop()
