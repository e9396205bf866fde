"""User tokens, links and request bodies, without services."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from pydantic import ValidationError

from activities.providers.inapp import action_url
from api.schemas.inbox import MAX_BULK_IDS, BulkIn, TokenIn
from herald.inbox.tokens import InboxUser, InvalidToken, sign, tenant_of, verify

pytestmark = pytest.mark.fast

SECRET = "k" * 43
USER = InboxUser(tenant=uuid.uuid4(), user_id="ada", test=False)


def test_a_token_names_its_tenant_and_user_until_it_expires() -> None:
    token, expires = sign(SECRET, USER, 60)

    assert tenant_of(token) == USER.tenant
    assert verify(token, SECRET) == USER
    assert expires > datetime.now(UTC)
    old, _ = sign(SECRET, USER, 60, now=datetime.now(UTC) - timedelta(seconds=120))
    with pytest.raises(InvalidToken, match="expired"):
        verify(old, SECRET)


def test_a_forged_or_rotated_token_is_refused() -> None:
    token, _ = sign(SECRET, USER, 60)
    with pytest.raises(InvalidToken):
        verify(token, "r" * 43)  # the tenant's secret changed since
    forged = jwt.encode(
        {"aud": "herald-inbox", "tid": str(USER.tenant), "sub": "eve", "exp": 2**40},
        "g" * 43,
        algorithm="HS256",
    )
    with pytest.raises(InvalidToken):
        verify(forged, SECRET)
    unsigned = jwt.encode({"tid": str(USER.tenant), "sub": "eve"}, "", algorithm="none")
    with pytest.raises(InvalidToken):
        tenant_of(unsigned)


@pytest.mark.parametrize(
    "token", ["", "hk_live_0123456789abcdef", "a.b.c", "x" * 5000, "eyJ\x00.e30.", "..."]
)
def test_anything_else_is_not_a_user_token(token: str) -> None:
    with pytest.raises(InvalidToken):
        tenant_of(token)


def test_another_audience_is_refused() -> None:
    token = jwt.encode(
        {"aud": "other", "tid": str(USER.tenant), "sub": "ada", "exp": 2**40},
        SECRET,
        algorithm="HS256",
    )
    with pytest.raises(InvalidToken):
        verify(token, SECRET)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"action_url": "https://app.example.com/orders/1"}, "https://app.example.com/orders/1"),
        ({"action_url": "/orders/1"}, "/orders/1"),
        ({"action_url": "javascript:alert(1)"}, None),
        ({"action_url": "//evil.example"}, None),
        ({"action_url": 42}, None),
        ({"action_url": "https://x/\x00"}, None),
        ({"action_url": "https://x/" + "a" * 3000}, None),
        ({}, None),
    ],
)
def test_only_a_web_link_becomes_the_action_url(
    data: dict[str, object], expected: str | None
) -> None:
    assert action_url(data) == expected


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": "ada", "ttl_seconds": 0}, "ttl_seconds"),
        ({"user_id": "ada", "ttl_seconds": -5}, "ttl_seconds"),
        ({"user_id": "ada", "ttl_seconds": 10**12}, "ttl_seconds"),
        ({"user_id": "ada", "ttl_seconds": "3600"}, "ttl_seconds"),
        ({"user_id": "ada", "ttl_seconds": 60.5}, "ttl_seconds"),
        ({"user_id": "a\x00b"}, "user_id"),
        ({"user_id": "a" * 200}, "user_id"),
        ({"user_id": ""}, "user_id"),
        ({"user_id": "ada", "admin": True}, "admin"),
    ],
)
def test_a_token_request_names_what_is_wrong(body: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TokenIn.model_validate(body)
    assert field in {str(loc) for error in caught.value.errors() for loc in error["loc"]}


def test_a_bulk_action_names_known_actions_and_few_enough_ids() -> None:
    assert BulkIn.model_validate({"action": "read"}).ids is None
    for body in (
        {"action": "unread"},
        {"action": "read", "ids": []},
        {"action": "read", "ids": ["not-a-uuid"]},
        {"action": "read", "ids": [str(uuid.uuid4()) for _ in range(MAX_BULK_IDS + 1)]},
    ):
        with pytest.raises(ValidationError):
            BulkIn.model_validate(body)
