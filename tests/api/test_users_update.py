"""``PUT`` and ``PATCH /v1/users/{id}`` against the real app in this process (real
PostgreSQL): a profile update never undoes a preference it does not name, ``PATCH``
merges, and hostile bodies are refused with a 422 naming the field."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from herald.settings import Settings
from tests.api.in_process import (
    api_key_for,
    in_process_client,
    in_process_settings,
    migrated_database,
)
from tests.harness import new_run_id

OPTED_OUT = {
    "email": False,
    "sms": True,
    "push": True,
    "categories": {"marketing": {"email": False}},
}
QUIET = {"start": "22:00", "end": "07:00"}


@pytest.fixture(scope="module")
def database() -> Iterator[Settings]:
    with migrated_database(in_process_settings()) as settings:
        yield settings


@pytest.fixture(scope="module")
async def client(database: Settings) -> AsyncIterator[httpx.AsyncClient]:
    key = await api_key_for(database, f"users-{new_run_id()}")
    async with in_process_client(database, key) as made:
        yield made


@pytest.fixture(scope="module")
async def other(database: Settings) -> AsyncIterator[httpx.AsyncClient]:
    key = await api_key_for(database, f"users-other-{new_run_id()}")
    async with in_process_client(database, key) as made:
        yield made


async def _user(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {
        "id": f"u-{new_run_id()}",
        "email": "ada@example.com",
        "phone": "+15550100123",
        "timezone": "Europe/London",
        "preferences": OPTED_OUT,
        "quiet_hours": QUIET,
        **fields,
    }
    created = await client.post("/v1/users", json=body)
    assert created.status_code == 201, created.text
    return dict(created.json())


async def _changed(
    client: httpx.AsyncClient, method: str, user_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    answer = await client.request(method, f"/v1/users/{user_id}", json=body)
    assert answer.status_code == 200, answer.text
    stored = (await client.get(f"/v1/users/{user_id}")).json()
    assert stored == answer.json()
    return dict(stored)


async def test_put_with_contact_fields_only_keeps_preferences_and_quiet_hours(
    client: httpx.AsyncClient,
) -> None:
    user = await _user(client)

    after = await _changed(client, "PUT", user["id"], {"email": "new@example.com"})

    assert after["email"] == "new@example.com"
    assert after["phone"] is None and after["timezone"] is None  # PUT replaces contacts
    assert after["preferences"] == OPTED_OUT
    assert after["quiet_hours"] == QUIET


async def test_put_replaces_what_it_names_and_only_that(client: httpx.AsyncClient) -> None:
    user = await _user(client)

    flags = await _changed(client, "PUT", user["id"], {"preferences": {"sms": False}})
    # The flags are replaced; the category opt-outs were not named and stay.
    assert flags["preferences"] == {
        "email": True,
        "sms": False,
        "push": True,
        "categories": {"marketing": {"email": False}},
    }
    assert flags["quiet_hours"] == QUIET

    cleared = await _changed(
        client, "PUT", user["id"], {"preferences": {"categories": {}}, "quiet_hours": None}
    )
    assert cleared["preferences"] == {"email": True, "sms": True, "push": True}
    assert cleared["quiet_hours"] is None


async def test_patch_changes_only_what_it_names_and_merges_categories(
    client: httpx.AsyncClient,
) -> None:
    user = await _user(client, preferences={"categories": {"news": {"sms": False}}})
    await _changed(
        client,
        "PATCH",
        user["id"],
        {"preferences": {"categories": {"marketing": {"email": False}}}},
    )

    after = await _changed(
        client,
        "PATCH",
        user["id"],
        {
            "phone": None,
            "locale": "fr",
            "preferences": {
                "push": False,
                "categories": {"marketing": {"sms": False}, "news": {"sms": True}},
            },
        },
    )

    assert after["email"] == "ada@example.com" and after["timezone"] == "Europe/London"
    assert after["phone"] is None and after["locale"] == "fr"
    assert after["quiet_hours"] == QUIET
    assert after["preferences"] == {
        "email": True,
        "sms": True,
        "push": False,
        "categories": {"marketing": {"email": False, "sms": False}, "news": {"sms": True}},
    }
    unchanged = await _changed(client, "PATCH", user["id"], {})
    assert {k: v for k, v in unchanged.items() if k != "updated_at"} == {
        k: v for k, v in after.items() if k != "updated_at"
    }


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"email": "ada\u0000@example.com"}, ["body", "email"]),
        ({"phone": "+1555\u00000100123"}, ["body", "phone"]),
        ({"locale": "en\u0000"}, ["body", "locale"]),
        ({"timezone": "Europe/London\u0000"}, ["body", "timezone"]),
        ({"quiet_hours": {"start": "22:00\u0000", "end": "07:00"}}, ["body", "quiet_hours"]),
        ({"preferences": {"categories": {"mark\u0000eting": {"email": False}}}}, None),
        ({"email": 42}, ["body", "email"]),
        ({"preferences": "none"}, ["body", "preferences"]),
        ({"preferences": None}, ["body", "preferences"]),
        ({"preferences": {"email": [True]}}, ["body", "preferences", "email"]),
        ({"preferences": {"categories": {"marketing": {"fax": False}}}}, None),
        ({"preferences": {"categories": {"transactional": {"email": False}}}}, None),
        ({"preferences": {"colour": "blue"}}, ["body", "preferences", "colour"]),
        ({"quiet_hours": "22:00-07:00"}, ["body", "quiet_hours"]),
        ({"id": "someone-else"}, ["body", "id"]),
        ({"timezone": "x" * 1_000_000}, ["body"]),
    ],
)
async def test_patch_refuses_a_bad_body_naming_the_field_and_changes_nothing(
    client: httpx.AsyncClient, body: dict[str, Any], loc: list[str] | None
) -> None:
    user = await _user(client)

    answer = await client.patch(f"/v1/users/{user['id']}", json=body)

    assert answer.status_code in (413, 422), answer.text
    if answer.status_code == 422:
        detail = answer.json()["detail"]
        assert isinstance(detail, list) and detail, detail
        assert detail[0]["loc"][: len(loc or ["body", "preferences", "categories"])] == (
            loc or ["body", "preferences", "categories"]
        )
    assert (await client.get(f"/v1/users/{user['id']}")).json() == user


async def test_patch_and_put_of_an_unknown_or_another_tenants_user_are_404(
    client: httpx.AsyncClient, other: httpx.AsyncClient
) -> None:
    theirs = await _user(other)

    for method in ("PATCH", "PUT"):
        for user_id in ("nobody-here", theirs["id"]):
            answer = await client.request(
                method, f"/v1/users/{user_id}", json={"preferences": {"email": True}}
            )
            assert answer.status_code == 404, (method, user_id, answer.text)
    assert (await other.get(f"/v1/users/{theirs['id']}")).json() == theirs


async def test_a_nul_in_the_path_is_refused(client: httpx.AsyncClient) -> None:
    answer = await client.patch("/v1/users/a%00b", json={"locale": "en"})

    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"] == ["path", "user_id"]
