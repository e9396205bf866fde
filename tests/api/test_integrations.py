"""``/v1/integrations`` on the real app and PostgreSQL: credentials go in once and never
come out (answers, the table's bytes, logs), hostile input is a 422 naming the field,
another tenant's integration is a 404, test keys and keys without the scope are 403, and
``check`` asks the provider (the SMTP sink) without sending anything."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from devtools.fakes.email_apis import FakeCredentials
from devtools.sinks import Sinks
from herald.db import make_engine
from herald.ports import free_port
from herald.settings import Settings
from herald.tenants import create_api_key
from tests.api.in_process import in_process_client, in_process_settings, migrated_database
from tests.harness import new_run_id

SECRET = f"s3cret-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def sinks() -> Iterator[Sinks]:
    running = Sinks(smtp_port=free_port(), http_port=free_port()).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def database() -> Iterator[Settings]:
    with migrated_database(in_process_settings(webhooks_allow_private=True)) as settings:
        yield settings


async def _key(settings: Settings, tenant: str, **kind: Any) -> str:
    engine = make_engine(settings, pool_size=1)
    try:
        return await create_api_key(engine, tenant, **kind)
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
async def keys(database: Settings) -> dict[str, str]:
    mine, other = f"int-{new_run_id()}", f"int-other-{new_run_id()}"
    return {
        "live": await _key(database, mine),
        "test": await _key(database, mine, test=True),
        "send_only": await _key(database, mine, scopes=frozenset({"send"})),
        "read_only": await _key(database, mine, scopes=frozenset({"read"})),
        "other": await _key(database, other),
    }


@pytest.fixture(scope="module")
async def client(database: Settings, keys: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process_client(database, keys["live"]) as made:
        yield made


def _as(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _smtp(sinks: Sinks, **extra: Any) -> dict[str, Any]:
    return {
        "channel": "email",
        "provider": "smtp",
        "name": "own relay",
        "config": {
            "host": "127.0.0.1",
            "port": sinks.smtp_port,
            "username": "relay-user",
            "password": SECRET,
            "from": "Ops <ops@example.org>",
        },
        **extra,
    }


async def test_credentials_go_in_once_and_never_come_out(
    client: httpx.AsyncClient,
    database: Settings,
    sinks: Sinks,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    created = await client.post("/v1/integrations", json=_smtp(sinks))
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["config"] == {
        "from": "[set]",
        "host": "[set]",
        "password": "[set]",
        "port": "[set]",
        "username": "[set]",
    }
    assert (body["channel"], body["provider"], body["name"]) == ("email", "smtp", "own relay")
    integration = body["id"]
    answers = [created.text]
    answers.append((await client.get("/v1/integrations")).text)
    answers.append((await client.get(f"/v1/integrations/{integration}")).text)
    changed = await client.patch(
        f"/v1/integrations/{integration}", json={"config": {"from": "New <new@example.org>"}}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["config"]["password"] == "[set]"  # merged, not replaced
    answers.append(changed.text)
    # The sink offers no AUTH without TLS: the check says so, and nothing more.
    checked = await client.post(f"/v1/integrations/{integration}/check")
    assert checked.status_code == 200, checked.text
    assert checked.json()["ok"] is False
    assert "AUTH" in checked.json()["detail"]
    answers.append(checked.text)
    answers.append((await client.get(f"/v1/integrations/{integration}")).text)
    for answer in answers:
        assert SECRET not in answer

    # The table holds no credential in the clear: every column of every row, as bytes.
    engine = make_engine(database, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(text("SELECT i::text, config_ciphertext FROM integrations i"))
            ).all()
    finally:
        await engine.dispose()
    assert rows
    for row_text, sealed in rows:
        assert SECRET not in row_text
        assert SECRET.encode() not in bytes(sealed)
        assert b"relay-user" not in bytes(sealed)
    # Nor the log, whatever a record carries.
    for record in caplog.records:
        assert SECRET not in str(record.__dict__)
    # Nothing was sent by the check.
    assert sinks.state.received("email") == []


async def test_priority_orders_the_channel_and_disable_and_delete(
    client: httpx.AsyncClient, sinks: Sinks
) -> None:
    first = (await client.post("/v1/integrations", json=_smtp(sinks, name="a"))).json()
    second = (await client.post("/v1/integrations", json=_smtp(sinks, name="b"))).json()
    assert second["priority"] == first["priority"] + 1
    moved = await client.patch(
        f"/v1/integrations/{second['id']}", json={"priority": 0, "enabled": False}
    )
    assert moved.status_code == 200, moved.text
    assert (moved.json()["priority"], moved.json()["enabled"]) == (0, False)
    gone = await client.delete(f"/v1/integrations/{first['id']}")
    assert gone.status_code == 204
    assert (await client.get(f"/v1/integrations/{first['id']}")).status_code == 404
    # A password removed with null; rate limits set and cleared.
    patched = await client.patch(
        f"/v1/integrations/{second['id']}",
        json={"config": {"password": None}, "rate_per_second": 5},
    )
    assert "password" not in patched.json()["config"]
    assert patched.json()["rate_per_second"] == 5
    cleared = await client.patch(f"/v1/integrations/{second['id']}", json={"rate_per_second": None})
    assert cleared.json()["rate_per_second"] is None


async def test_check_logs_in_and_quits_without_sending(
    client: httpx.AsyncClient, sinks: Sinks
) -> None:
    open_relay = {
        "channel": "email",
        "provider": "smtp",
        "config": {"host": "127.0.0.1", "port": sinks.smtp_port},
    }
    made = (await client.post("/v1/integrations", json=open_relay)).json()
    checked = (await client.post(f"/v1/integrations/{made['id']}/check")).json()
    assert checked["ok"] is True, checked
    assert sinks.state.received("email") == []


async def test_a_failed_check_is_noted_on_the_integration(client: httpx.AsyncClient) -> None:
    dead = {
        "channel": "email",
        "provider": "smtp",
        "config": {"host": "127.0.0.1", "port": free_port()},
    }
    made = (await client.post("/v1/integrations", json=dead)).json()
    checked = (await client.post(f"/v1/integrations/{made['id']}/check")).json()
    assert checked["ok"] is False
    assert "connect" in checked["detail"].lower()
    shown = (await client.get(f"/v1/integrations/{made['id']}")).json()
    assert shown["last_error"].startswith("check:") and shown["last_error_at"]


def _locs(answer: httpx.Response) -> list[list[Any]]:
    return [error["loc"] for error in answer.json()["detail"]]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"channel": "email", "provider": "sendgrid", "config": {}}, ["body", "config", "api_key"]),
        (
            {"channel": "email", "provider": "sendgrid", "config": {"api_key": "SG.a\x00b"}},
            ["body", "config", "api_key"],
        ),
        (
            {"channel": "email", "provider": "sendgrid", "config": {"api_key": "k", "apikey": "k"}},
            ["body", "config", "apikey"],
        ),
        (
            {"channel": "email", "provider": "mailgun", "config": {"api_key": "k"}},
            ["body", "config", "domain"],
        ),
        (
            {"channel": "email", "provider": "twilio", "config": {"api_key": "k"}},
            ["body", "provider"],
        ),
        ({"channel": "sms", "provider": "carrier-pigeon", "config": {}}, ["body", "provider"]),
        ({"channel": "fax", "provider": "smtp", "config": {}}, ["body", "channel"]),
        (
            {
                "channel": "email",
                "provider": "sendgrid",
                "config": {"api_key": "k", "base_url": "ftp://x"},
            },
            ["body", "config", "base_url"],
        ),
        (
            {"channel": "email", "provider": "smtp", "config": {"host": "h", "port": "99999999"}},
            ["body", "config", "port"],
        ),
        (
            {"channel": "email", "provider": "sendgrid", "config": {"api_key": "k" * 5000}},
            ["body", "config", "api_key"],
        ),
        (
            {
                "channel": "email",
                "provider": "sendgrid",
                "config": {f"k{i}": "v" for i in range(500)},
            },
            ["body", "config"],
        ),
        ({"channel": "push", "provider": "fcm", "config": {"project_id": "p"}}, ["body", "config"]),
        (
            {
                "channel": "email",
                "provider": "sendgrid",
                "config": {"api_key": "k"},
                "priority": -1,
            },
            ["body", "priority"],
        ),
    ],
)
async def test_hostile_input_is_a_422_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], loc: list[Any]
) -> None:
    answer = await client.post("/v1/integrations", json=body)
    assert answer.status_code == 422, answer.text
    assert loc in _locs(answer), answer.text
    # The refused value is never echoed back (it may be a credential).
    assert "SG.a" not in answer.text and "k" * 100 not in answer.text


async def test_a_whole_body_too_large_is_refused(client: httpx.AsyncClient) -> None:
    huge = {"channel": "email", "provider": "sendgrid", "config": {"api_key": "k" * 3_000_000}}
    answer = await client.post("/v1/integrations", json=huge)
    assert answer.status_code == 413, answer.text


async def test_another_tenants_integration_is_not_found(
    client: httpx.AsyncClient, keys: dict[str, str], sinks: Sinks
) -> None:
    mine = (await client.post("/v1/integrations", json=_smtp(sinks))).json()["id"]
    other = _as(keys["other"])
    path = f"/v1/integrations/{mine}"
    assert (await client.get(path, headers=other)).status_code == 404
    assert (await client.patch(path, json={"enabled": False}, headers=other)).status_code == 404
    assert (await client.post(f"{path}/check", headers=other)).status_code == 404
    assert (await client.delete(path, headers=other)).status_code == 404
    listed = (await client.get("/v1/integrations", headers=other)).json()
    assert mine not in {item["id"] for item in listed}
    assert (await client.get(path)).json()["enabled"] is True
    # Not a UUID, or one with a NUL: a 422 naming the path parameter.
    bad = await client.get("/v1/integrations/not-a-uuid%00")
    assert bad.status_code == 422
    assert ["path", "integration_id"] in _locs(bad)


async def test_test_keys_and_keys_without_the_scope_may_not_change_integrations(
    client: httpx.AsyncClient, keys: dict[str, str], sinks: Sinks
) -> None:
    mine = (await client.post("/v1/integrations", json=_smtp(sinks))).json()["id"]
    for key in ("test", "send_only", "read_only"):
        headers = _as(keys[key])
        assert (
            await client.post("/v1/integrations", json=_smtp(sinks), headers=headers)
        ).status_code == 403
        path = f"/v1/integrations/{mine}"
        assert (await client.patch(path, json={"priority": 3}, headers=headers)).status_code == 403
        assert (await client.delete(path, headers=headers)).status_code == 403
        assert (await client.post(f"{path}/check", headers=headers)).status_code == 403
    # Reading (redacted) takes the read scope, which test keys have.
    assert (await client.get("/v1/integrations", headers=_as(keys["test"]))).status_code == 200
    assert (await client.get("/v1/integrations", headers=_as(keys["read_only"]))).status_code == 200
    assert (await client.get("/v1/integrations", headers=_as(keys["send_only"]))).status_code == 403


async def test_a_twilio_check_reads_the_account_and_sends_nothing(
    client: httpx.AsyncClient, sinks: Sinks
) -> None:
    def twilio(token: str) -> dict[str, Any]:
        return {
            "channel": "sms",
            "provider": "twilio",
            "config": {
                "account_sid": "ACcheck",
                "auth_token": token,
                "from": "+15550001111",
                "base_url": sinks.http_url,
            },
        }

    good = (await client.post("/v1/integrations", json=twilio("dev-token"))).json()
    bad = (await client.post("/v1/integrations", json=twilio("wrong-token"))).json()
    assert (await client.post(f"/v1/integrations/{good['id']}/check")).json()["ok"] is True
    refused = (await client.post(f"/v1/integrations/{bad['id']}/check")).json()
    assert refused == {"ok": False, "detail": "Twilio answered HTTP 401"}
    assert sinks.state.received("sms") == []


@pytest.mark.parametrize("provider", ["sendgrid", "mailgun", "postmark", "ses"])
async def test_an_email_api_check_reads_the_account_and_sends_nothing(
    client: httpx.AsyncClient, sinks: Sinks, provider: str
) -> None:
    wrong = {
        "sendgrid": {"api_key": SECRET},
        "mailgun": {"api_key": SECRET},
        "postmark": {"server_token": SECRET},
        "ses": {"secret_access_key": SECRET},
    }[provider]
    config = FakeCredentials().config(provider, sinks.http_url) | {"from": "ops@example.org"}
    before = sinks.state.received("email")

    async def check(config: dict[str, str]) -> dict[str, Any]:
        made = await client.post(
            "/v1/integrations", json={"channel": "email", "provider": provider, "config": config}
        )
        assert made.status_code == 201, made.text
        answer = await client.post(f"/v1/integrations/{made.json()['id']}/check")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    assert await check(config) == {"ok": True, "detail": f"{provider} accepted the credentials"}
    refused = await check(config | wrong)
    assert refused["ok"] is False
    assert refused["detail"].startswith(f"{provider} refused the credentials: HTTP 40")
    assert SECRET not in refused["detail"]
    assert sinks.state.received("email") == before
