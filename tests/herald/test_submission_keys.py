"""The ids and fingerprints that make a submission idempotent: the notification id an
Idempotency-Key names, and the hash that tells a replay from a different request."""

from __future__ import annotations

import uuid

import pytest

from herald.contracts import NotificationRequest
from herald.submission import idempotent_id, request_hash

pytestmark = pytest.mark.fast

TENANT = uuid.UUID("3d0c6d0e-5a4b-4f7e-9a0b-6c1d2e3f4a5b")
OTHER_TENANT = uuid.UUID("9e8d7c6b-5a49-4838-a726-151403f2e1d0")


def request(**fields: object) -> NotificationRequest:
    values: dict[str, object] = {
        "channel": "email",
        "user_id": "ada",
        "template": "welcome",
        "data": {"name": "Ada", "code": "4711"},
    }
    return NotificationRequest.model_validate(values | fields)


def test_one_tenant_and_key_always_name_one_notification() -> None:
    first = idempotent_id(TENANT, "signup-ada")

    assert idempotent_id(TENANT, "signup-ada") == first
    assert first.version == 5
    assert idempotent_id(TENANT, "signup-bo") != first
    assert idempotent_id(OTHER_TENANT, "signup-ada") != first


def test_the_hash_is_stable_and_ignores_key_order_in_data() -> None:
    one = request(data={"name": "Ada", "code": "4711"})
    same = request(data={"code": "4711", "name": "Ada"})

    assert request_hash(one) == request_hash(same)
    assert len(request_hash(one)) == 64
    assert int(request_hash(one), 16) >= 0


@pytest.mark.parametrize(
    "change",
    [
        {"channel": "sms"},
        {"user_id": "bo"},
        {"template": "reminder"},
        {"locale": "de"},
        {"data": {"name": "Ada", "code": "4712"}},
        {"send_at": "2030-01-01T09:00:00Z"},
        {"fallback": ["sms"]},
    ],
)
def test_any_difference_in_what_was_asked_changes_the_hash(change: dict[str, object]) -> None:
    assert request_hash(request(**change)) != request_hash(request())


def test_an_empty_fallback_hashes_as_a_request_from_before_the_field_existed() -> None:
    assert request_hash(request(fallback=[])) == request_hash(request())


def test_ids_and_hashes_already_stored_keep_their_values() -> None:
    """Notifications already accepted keep their id and hash in PostgreSQL: a change of
    either derivation would turn an Idempotency-Key replay into a 409 or a new send."""
    assert idempotent_id(TENANT, "signup-ada") == uuid.UUID("e09d3e63-1add-5b56-ac26-b5a282a2084b")
    assert request_hash(request()) == (
        "385ed806f9fd427afe04023966cac169c71ec238a71f7318c6e975f465f56ccc"
    )
