"""How a status event's unique key is derived: a retried write of one transition is a
no-op, while every distinct transition (another attempt, cycle or fallback leg, or a
note) gets a row of its own. Also the keys a notification is found and deduplicated by."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from herald.contracts import RenderedMessage, SendRequest, Status, StatusEvent, workflow_id_for

pytestmark = pytest.mark.fast

NOTIFICATION = uuid.UUID("6f1c9a2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b")
AT = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)


def event(status: Status = Status.retrying, **fields: object) -> StatusEvent:
    values: dict[str, object] = {
        "notification_id": NOTIFICATION,
        "status": status,
        "at": AT,
        "attempt": 2,
    }
    return StatusEvent.model_validate(values | fields)


def test_the_key_is_cycle_status_and_attempt() -> None:
    assert event().key == "1:retrying:2"
    assert event(Status.sent, cycle=3, attempt=1).key == "3:sent:1"


def test_a_retried_write_of_one_transition_has_the_same_key() -> None:
    # Written once by the channel worker and again by the workflow, moments apart, with
    # other details: still one transition.
    by_worker = event(Status.sent, attempt=1, provider="smtp", detail="sent on email by smtp")
    by_workflow = event(Status.sent, attempt=1, at=AT + timedelta(seconds=2))

    assert by_worker.key == by_workflow.key


@pytest.mark.parametrize(
    "other",
    [
        {"attempt": 3},
        {"cycle": 2},
        {"status": Status.sending},
        {"leg": 1},
    ],
)
def test_each_distinct_transition_has_its_own_key(other: dict[str, object]) -> None:
    assert event(**other).key != event().key  # type: ignore[arg-type]


def test_the_requested_channel_keeps_keys_without_a_leg() -> None:
    assert event(leg=0).key == "1:retrying:2"
    assert event(leg=2).key == "1:retrying:2:leg2"


def test_notes_are_keyed_by_their_time_so_each_one_is_kept() -> None:
    first = event(Status.accepted, attempt=0, annotation=True, detail="falling back")
    later = event(Status.accepted, attempt=0, annotation=True, at=AT + timedelta(milliseconds=1))

    assert first.key == f"1:accepted:0:note:{AT.isoformat()}"
    assert first.key != later.key
    assert first.key != event(Status.accepted, attempt=0).key


def test_the_idempotency_key_is_the_notification_id_then_one_per_resend() -> None:
    message = RenderedMessage(template_version=1, locale="en", body="hi")
    request = SendRequest(
        notification_id=NOTIFICATION, channel="sms", address="+15550001111", message=message
    )

    assert request.idempotency_key == str(NOTIFICATION)
    assert request.model_copy(update={"cycle": 2}).idempotency_key == f"{NOTIFICATION}-2"
    assert request.model_copy(update={"leg": 1}).idempotency_key == str(NOTIFICATION)


def test_the_workflow_id_is_the_notification_id_and_nothing_else() -> None:
    assert workflow_id_for(NOTIFICATION) == f"notification-{NOTIFICATION}"
    assert workflow_id_for(str(NOTIFICATION)) == workflow_id_for(NOTIFICATION)
