"""The pydantic contracts: patterns hold for the whole value (a pattern that stops before a
trailing newline lets it through), and messages published by older code still decode."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from herald.contracts import E164, Channel, FailedNotification, NotificationRequest

VALID: dict[str, Any] = {"channel": "sms", "user_id": "ada", "template": "welcome", "locale": "en"}


@pytest.mark.parametrize("phone", ["+15550100123\n", "+15550100123\r\n", "\n+15550100123"])
def test_e164_refuses_a_number_with_a_line_break(phone: str) -> None:
    assert E164.match(phone) is None


def test_e164_accepts_a_plain_number() -> None:
    assert E164.match("+15550100123") is not None


@pytest.mark.parametrize("field", ["user_id", "template", "locale"])
def test_request_fields_refuse_a_trailing_newline(field: str) -> None:
    assert NotificationRequest.model_validate(VALID).channel.value == "sms"
    with pytest.raises(ValidationError) as refused:
        NotificationRequest.model_validate({**VALID, field: f"{VALID[field]}\n"})
    assert [error["loc"] for error in refused.value.errors()] == [(field,)]


FAILED_BODY: dict[str, Any] = {
    "id": "6f1c1b8e-4a52-4a43-9a0e-2f7f5d7f9a10",
    "tenant_id": "0b0f7a36-1a5e-4cf4-8f2c-4f3f0e3c6a11",
    "channel": "sms",
    "user_id": "ada",
    "template": "welcome",
    "last_error": "twilio: HTTP 400",
    "failed_at": "2030-01-01T09:00:00Z",
}


def test_a_failed_notification_published_before_fallback_was_carried_still_decodes() -> None:
    old = FailedNotification.model_validate_json(json.dumps(FAILED_BODY))
    assert old.fallback == []


def test_a_failed_notification_carries_its_fallback_through_json() -> None:
    failed = FailedNotification.model_validate({**FAILED_BODY, "fallback": ["email", "push"]})
    decoded = FailedNotification.model_validate_json(failed.model_dump_json())
    assert decoded.fallback == [Channel.email, Channel.push]
    assert decoded.channels == [Channel.sms, Channel.email, Channel.push]
