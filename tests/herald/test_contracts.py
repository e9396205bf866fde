"""The pydantic contracts refuse what the README says they refuse, the whole value and
nothing but the value: a pattern that stops before a trailing newline lets it through."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from herald.contracts import E164, NotificationRequest

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
