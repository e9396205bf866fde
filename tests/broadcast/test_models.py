"""The pure parts of batches and broadcasts: derived ids, audiences, request checks, and
which routes get the bulk body limit."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from api.main import is_bulk_route
from api.schemas.broadcasts import BroadcastIn
from api.schemas.notifications import BatchItem
from herald.contracts import (
    Audience,
    NotificationRequest,
    broadcast_workflow_id,
    recipient_notification_id,
)
from herald.submission import request_hash

pytestmark = pytest.mark.fast


def test_a_recipient_gets_the_same_notification_id_every_time_and_no_one_else_does() -> None:
    broadcast, other = uuid.uuid4(), uuid.uuid4()
    assert recipient_notification_id(broadcast, "ada") == recipient_notification_id(
        broadcast, "ada"
    )
    assert recipient_notification_id(broadcast, "ada") != recipient_notification_id(
        broadcast, "bob"
    )
    assert recipient_notification_id(broadcast, "ada") != recipient_notification_id(other, "ada")
    assert broadcast_workflow_id(broadcast) == f"broadcast-{broadcast}"


@pytest.mark.parametrize(
    "audience",
    [
        {},
        {"topic": "a", "all_users": True},
        {"topic": "a", "user_ids": ["x"]},
        {"all_users": False},
    ],
)
def test_an_audience_names_exactly_one_kind(audience: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="exactly one audience"):
        Audience.model_validate(audience)


def test_an_audience_lists_at_most_10000_users() -> None:
    Audience(user_ids=[f"u{i}" for i in range(10_000)])
    with pytest.raises(ValidationError):
        Audience(user_ids=[f"u{i}" for i in range(10_001)])


def test_a_broadcast_is_checked_as_each_recipient_request_would_be() -> None:
    base = {"channel": "email", "template": "news", "audience": {"topic": "all"}}
    BroadcastIn.model_validate(base | {"fallback": ["sms"]})
    with pytest.raises(ValidationError, match="fallback repeats the channel"):
        BroadcastIn.model_validate(base | {"fallback": ["email"]})
    with pytest.raises(ValidationError, match="send_at"):
        BroadcastIn.model_validate(base | {"send_at": "2030-01-01T09:00:00"})
    with pytest.raises(ValidationError, match="rate_per_second"):
        BroadcastIn.model_validate(base | {"rate_per_second": 0})


def test_a_batch_item_fingerprints_as_the_same_single_request() -> None:
    fields = {"channel": "email", "user_id": "ada", "template": "welcome", "data": {"n": 1}}
    item = BatchItem.model_validate(fields | {"idempotency_key": "k"})
    # So an item and a single call under the same key are one notification.
    assert request_hash(item) == request_hash(NotificationRequest.model_validate(fields))


@pytest.mark.parametrize(
    ("path", "bulk"),
    [
        ("/v1/notifications/batch", True),
        ("/v1/broadcasts", True),
        ("/v1/topics/news/subscribers", True),
        ("/v1/notifications", False),
        ("/v1/topics/news", False),
        ("/v1/users", False),
    ],
)
def test_only_the_bulk_routes_get_the_bulk_body_limit(path: str, bulk: bool) -> None:
    assert is_bulk_route(path) is bulk
