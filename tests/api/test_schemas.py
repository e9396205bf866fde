"""REST bodies refuse a phone number with anything around its E.164 digits."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from api.schemas.users import UserCreate


def test_a_plain_e164_number_is_kept() -> None:
    assert UserCreate(id="ada", phone="+15550100123").phone == "+15550100123"


@pytest.mark.parametrize("phone", ["+15550100123\n", "+447700900123\n"])
def test_a_phone_with_a_trailing_newline_is_refused(phone: str) -> None:
    with pytest.raises(ValidationError) as refused:
        UserCreate(id="ada", phone=phone)
    (error,) = refused.value.errors()
    assert error["loc"] == ("phone",)
    assert "E.164" in error["msg"]
