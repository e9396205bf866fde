"""Validation refuses the whole value, not only its first line: a trailing newline is a
422 naming the field, checked against the real app in this process."""

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


@pytest.fixture(scope="module")
def database() -> Iterator[Settings]:
    with migrated_database(in_process_settings()) as settings:
        yield settings


@pytest.fixture(scope="module")
async def client(database: Settings) -> AsyncIterator[httpx.AsyncClient]:
    key = await api_key_for(database, f"in-process-{new_run_id()}")
    async with in_process_client(database, key) as made:
        yield made


async def test_a_plain_e164_phone_is_accepted(client: httpx.AsyncClient) -> None:
    created = await client.post("/v1/users", json={"id": "plain", "phone": "+15550100123"})
    assert created.status_code == 201, created.text
    assert created.json()["phone"] == "+15550100123"


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("/v1/users", {"id": "nl-phone", "phone": "+15550100123\n"}, ["body", "phone"]),
        ("/v1/users", {"id": "nl-id\n"}, ["body", "id"]),
        ("/v1/users", {"id": "nl-locale", "locale": "en\n"}, ["body", "locale"]),
        (
            "/v1/templates",
            {"key": "nl-key\n", "channel": "sms", "body": "hi"},
            ["body", "key"],
        ),
        (
            "/v1/notifications",
            {"channel": "sms", "user_id": "ada\n", "template": "welcome"},
            ["body", "user_id"],
        ),
        (
            "/v1/notifications",
            {"channel": "sms", "user_id": "ada", "template": "welcome\n"},
            ["body", "template"],
        ),
    ],
)
async def test_a_trailing_newline_is_a_422_naming_the_field(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], loc: list[str]
) -> None:
    response = await client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["detail"]] == [loc]
