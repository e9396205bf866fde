"""One definition of the search attributes serves the dev server, the cluster setup, the
workflow start and every transition; none of them carries PII."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devtools.devserver import SEARCH_ATTRIBUTES, TemporalDevServer
from herald import search
from herald.contracts import Channel, NotificationInput, Status

pytestmark = pytest.mark.fast


def notification(**fields: object) -> NotificationInput:
    values: dict[str, object] = {
        "notification_id": uuid.uuid4(),
        "tenant_id": uuid.uuid4(),
        "tenant": "acme",
        "channel": Channel.sms,
        "user_id": "u-42",
        "template": "otp",
        "created_at": datetime(2030, 1, 1, tzinfo=UTC),
        "request_id": "req-7",
        "data": {"phone": "+15551234567", "email": "ada@example.com"},
    }
    return NotificationInput.model_validate(values | fields)


def test_the_dev_server_registers_exactly_the_typed_keys() -> None:
    assert SEARCH_ATTRIBUTES == {
        "HeraldStatus": "Keyword",
        "HeraldChannel": "Keyword",
        "HeraldTemplate": "Keyword",
        "HeraldTenant": "Keyword",
        "HeraldRecipient": "Keyword",
        "HeraldAttempts": "Int",
        "HeraldStatusSince": "Datetime",
        "HeraldBroadcastStarted": "Int",
        "HeraldFlow": "Keyword",
        "HeraldFlowState": "Keyword",
    }
    command = TemporalDevServer(Path("/tmp/unused.db")).command()
    flags = {command[i + 1] for i, arg in enumerate(command) if arg == "--search-attribute"}
    assert flags == {f"{name}={kind}" for name, kind in SEARCH_ATTRIBUTES.items()}


def test_start_attributes_summary_and_details_carry_no_pii() -> None:
    started = notification()
    attributes = {pair.key.name: pair.value for pair in search.at_start(started)}
    # No status yet: a clean send never gets one, any other run sets it when it lasts.
    assert attributes == {
        "HeraldChannel": "sms",
        "HeraldTemplate": "otp",
        "HeraldTenant": "acme",
        "HeraldRecipient": "u-42",
    }
    shown = search.summary(started) + search.details(started)
    assert search.summary(started) == "sms · template otp · tenant acme"
    assert "req-7" in shown and str(started.notification_id) in shown
    assert "+1555" not in shown and "@" not in shown
    assert search.summary(notification(cycle=3)).endswith(", resend 2")


def test_a_transition_moves_status_since_only_when_the_status_changes() -> None:
    at = datetime(2030, 1, 1, 12, tzinfo=UTC)
    changed = search.on_transition(Status.retrying, 2, at)
    assert [(u.key.name, u.value) for u in changed] == [
        ("HeraldStatus", "retrying"),
        ("HeraldAttempts", 2),
        ("HeraldStatusSince", at),
    ]
    same = search.on_transition(Status.retrying, 3, None)
    assert [u.key.name for u in same] == ["HeraldStatus", "HeraldAttempts"]
