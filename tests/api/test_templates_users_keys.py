"""The REST routes the console is built on, usable without it: the template list and
preview, the user list and devices, API keys (a revoked key is refused at once, by every
API process), and the template filter of the notification list. In-process app on a real
PostgreSQL database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

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
    # A long key cache: revocation must not depend on it expiring.
    with migrated_database(in_process_settings(api_key_cache_seconds=300.0)) as settings:
        yield settings


@pytest.fixture
async def key(database: Settings) -> str:
    return await api_key_for(database, f"rest-{new_run_id()}")


@pytest.fixture
async def client(database: Settings, key: str) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process_client(database, key) as made:
        yield made


async def _template(
    client: httpx.AsyncClient, key: str, channel: str = "email", **extra: str
) -> None:
    body = {
        "key": key,
        "channel": channel,
        "subject": "Hi {{ name }}",
        "body": "<p>{{ name }}: {{ code }}</p>",
    }
    created = await client.post("/v1/templates", json={**body, **extra})
    assert created.status_code == 201, created.text


async def test_templates_are_listed_by_key_with_channels_locales_and_latest_versions(
    client: httpx.AsyncClient,
) -> None:
    for name in ("alpha", "bravo", "charlie"):
        await _template(client, name)
    await _template(client, "alpha", channel="sms")
    await _template(client, "alpha", channel="sms", locale="de")
    updated = await client.put(
        "/v1/templates/alpha",
        json={"key": "alpha", "channel": "email", "subject": "S", "body": "v2"},
    )
    assert updated.status_code == 200, updated.text

    first = (await client.get("/v1/templates", params={"limit": 2})).json()
    assert [item["key"] for item in first["items"]] == ["alpha", "bravo"]
    alpha = first["items"][0]
    assert alpha["channels"] == ["email", "sms"]
    assert alpha["locales"] == ["de", "en"]
    assert {(v["channel"], v["locale"], v["version"]) for v in alpha["latest"]} == {
        ("email", "en", 2),
        ("sms", "de", 1),
        ("sms", "en", 1),
    }
    rest = (await client.get("/v1/templates", params={"cursor": first["next_cursor"]})).json()
    assert [item["key"] for item in rest["items"]] == ["charlie"]
    assert rest["next_cursor"] is None


async def test_preview_renders_as_a_send_would_and_names_a_missing_variable(
    client: httpx.AsyncClient,
) -> None:
    await _template(client, "welcome")
    rendered = await client.post(
        "/v1/templates/welcome/preview",
        json={"channel": "email", "data": {"name": "<Ada>", "code": 4711}},
    )
    assert rendered.status_code == 200, rendered.text
    assert rendered.json() == {
        "channel": "email",
        "locale": "en",
        "version": 1,
        "subject": "Hi <Ada>",
        "body": "<Ada>: 4711",
        "html": "<p>&lt;Ada&gt;: 4711</p>",  # escaped in the HTML, as in the email
    }

    missing = await client.post(
        "/v1/templates/welcome/preview", json={"channel": "email", "data": {"name": "Ada"}}
    )
    assert missing.status_code == 422
    (error,) = missing.json()["detail"]
    assert error["loc"] == ["body", "data"]
    assert "'code'" in error["msg"]

    draft = await client.post(
        "/v1/templates/welcome/preview",
        json={"channel": "sms", "body": "Code {{ code }}", "data": {"code": 1}},
    )
    assert draft.json()["body"] == "Code 1"
    assert draft.json()["html"] is None
    unknown = await client.post("/v1/templates/nope/preview", json={"channel": "email"})
    assert unknown.status_code == 404


async def test_users_are_listed_by_id_and_searched_by_id_or_email_prefix(
    client: httpx.AsyncClient,
) -> None:
    for user_id, email in [
        ("ada", "countess@example.com"),
        ("alan", "turing@example.com"),
        ("grace", "ada_h@example.com"),
        ("a_b", None),
    ]:
        created = await client.post("/v1/users", json={"id": user_id, "email": email})
        assert created.status_code == 201, created.text
    page = (await client.get("/v1/users", params={"limit": 2})).json()
    assert [user["id"] for user in page["items"]] == ["a_b", "ada"]
    more = (
        await client.get("/v1/users", params={"limit": 2, "cursor": page["next_cursor"]})
    ).json()
    assert [user["id"] for user in more["items"]] == ["alan", "grace"]

    found = (await client.get("/v1/users", params={"search": "ada"})).json()
    assert [user["id"] for user in found["items"]] == ["ada", "grace"]  # id, then email
    literal = (await client.get("/v1/users", params={"search": "a_"})).json()
    assert [user["id"] for user in literal["items"]] == ["a_b"]  # _ is not a wildcard

    await client.post("/v1/users/ada/devices", json={"token": "tok-1", "platform": "ios"})
    devices = (await client.get("/v1/users/ada/devices")).json()["items"]
    assert [(d["token"], d["platform"]) for d in devices] == [("tok-1", "ios")]
    assert (await client.get("/v1/users/nobody/devices")).status_code == 404


async def test_a_new_key_is_shown_once_listed_by_prefix_and_revoked_at_once(
    database: Settings, client: httpx.AsyncClient, key: str
) -> None:
    created = await client.post("/v1/api-keys", json={"kind": "test"})
    assert created.status_code == 201, created.text
    new = created.json()
    assert new["kind"] == "test" and new["key"].startswith(new["prefix"])
    listed = (await client.get("/v1/api-keys")).json()["items"]
    assert listed[0]["id"] == new["id"]  # newest first
    assert all("key" not in item for item in listed)
    own = next(item for item in listed if key.startswith(item["prefix"]))
    assert own["kind"] == "live" and own["last_used_at"] is not None

    headers = {"Authorization": f"Bearer {new['key']}"}
    assert (await client.get("/v1/users", headers=headers)).status_code == 200  # now cached
    revoked = await client.delete(f"/v1/api-keys/{new['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    refused = await client.get("/v1/users", headers=headers)
    assert refused.status_code == 401  # at once, though its answer was cached for 300 s


async def test_a_revocation_reaches_every_api_process_at_once(
    database: Settings, client: httpx.AsyncClient
) -> None:
    victim = (await client.post("/v1/api-keys", json={})).json()
    headers = {"Authorization": f"Bearer {victim['key']}"}
    async with in_process_client(database) as elsewhere:  # a second API process
        listener = elsewhere._transport.app.state.revocations  # type: ignore[attr-defined]
        deadline = time.monotonic() + 20
        while not listener.listening.is_set():
            assert time.monotonic() < deadline, "the second process never listened"
            await asyncio.sleep(0.05)
        assert (await elsewhere.get("/v1/users", headers=headers)).status_code == 200
        assert (await client.delete(f"/v1/api-keys/{victim['id']}")).status_code == 200
        deadline = time.monotonic() + 5
        while (await elsewhere.get("/v1/users", headers=headers)).status_code != 401:
            assert time.monotonic() < deadline, "the other process still accepts the key"
            await asyncio.sleep(0.05)


async def test_a_test_key_manages_only_test_keys_and_other_tenants_keys_are_404(
    database: Settings, client: httpx.AsyncClient
) -> None:
    test_key = (await client.post("/v1/api-keys", json={"kind": "test"})).json()
    live_key = (await client.post("/v1/api-keys", json={"kind": "live"})).json()
    as_test = {"Authorization": f"Bearer {test_key['key']}"}
    assert (
        await client.post("/v1/api-keys", json={"kind": "live"}, headers=as_test)
    ).status_code == 403
    assert (
        await client.delete(f"/v1/api-keys/{live_key['id']}", headers=as_test)
    ).status_code == 403
    assert (
        await client.post("/v1/api-keys", json={"kind": "test"}, headers=as_test)
    ).status_code == 201

    stranger = await api_key_for(database, f"stranger-{new_run_id()}")
    as_stranger = {"Authorization": f"Bearer {stranger}"}
    assert (
        await client.delete(f"/v1/api-keys/{live_key['id']}", headers=as_stranger)
    ).status_code == 404
    theirs = (await client.get("/v1/api-keys", headers=as_stranger)).json()["items"]
    assert live_key["id"] not in {item["id"] for item in theirs}
    assert (await client.get("/v1/templates", headers=as_stranger)).json()["items"] == []
