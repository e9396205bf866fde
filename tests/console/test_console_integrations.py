"""The console's integrations page on the real app and PostgreSQL: add one (its
credentials never shown back, not even on a refusal), reorder, disable, check, remove;
another tenant's integration is not found; a read-only console may look but not change."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from herald.db import make_engine
from herald.ports import free_port
from herald.settings import Settings
from herald.tenants import ensure_tenant, issue_api_key
from tests.api.in_process import in_process_client, in_process_settings, migrated_database
from tests.console.support import sign_in
from tests.harness import new_run_id

SECRET = f"SG.console-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def database() -> Iterator[Settings]:
    settings = in_process_settings(console_secure_cookie=False, webhooks_allow_private=True)
    with migrated_database(settings) as made:
        yield made


@pytest.fixture
async def client(database: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process_client(database) as made:
        yield made


async def _key(settings: Settings, **kind: object) -> str:
    engine = make_engine(settings, pool_size=1)
    try:
        tenant = await ensure_tenant(engine, f"console-int-{new_run_id()}")
        key, _ = await issue_api_key(engine, tenant.id, **kind)  # type: ignore[arg-type]
        return key
    finally:
        await engine.dispose()


async def test_integrations_are_added_ordered_disabled_checked_and_removed(
    database: Settings, client: httpx.AsyncClient
) -> None:
    key = await _key(database)
    csrf = await sign_in(client, key)
    sendgrid = json.dumps({"api_key": SECRET, "base_url": "http://127.0.0.1:9/sendgrid"})
    made = await client.post(
        "/console/integrations",
        data={
            "channel_provider": "email:sendgrid",
            "name": "sg",
            "config": sendgrid,
            "csrf_token": csrf,
        },
        follow_redirects=True,
    )
    assert made.status_code == 200, made.text
    relay = json.dumps({"host": "127.0.0.1", "port": free_port()})
    await client.post(
        "/console/integrations",
        data={
            "channel_provider": "email:smtp",
            "name": "relay",
            "config": relay,
            "csrf_token": csrf,
        },
    )
    rest = {"Authorization": f"Bearer {key}"}
    sg, smtp = (await client.get("/v1/integrations", headers=rest)).json()
    assert (sg["name"], smtp["name"]) == ("sg", "relay")
    page = await client.get("/console/integrations")
    assert "api_key" in page.text and SECRET not in page.text

    # Refused: the message names the field and never shows the typed credential back.
    refused = await client.post(
        "/console/integrations",
        data={
            "channel_provider": "email:sendgrid",
            "config": json.dumps({"api_key": SECRET + "\x00"}),
            "csrf_token": csrf,
        },
    )
    assert refused.status_code == 422 and "api_key" in refused.text
    assert SECRET not in refused.text
    unknown = await client.post(
        "/console/integrations",
        data={"channel_provider": "sms:smtp", "config": "{}", "csrf_token": csrf},
    )
    assert unknown.status_code == 422 and "unknown provider" in unknown.text

    moved = await client.post(
        f"/console/integrations/{smtp['id']}/move", data={"direction": "up", "csrf_token": csrf}
    )
    assert moved.status_code == 303
    first, second = (await client.get("/v1/integrations", headers=rest)).json()
    assert (first["name"], second["name"]) == ("relay", "sg")
    await client.post(
        f"/console/integrations/{sg['id']}/enabled", data={"enabled": "false", "csrf_token": csrf}
    )
    assert (await client.get(f"/v1/integrations/{sg['id']}", headers=rest)).json()[
        "enabled"
    ] is False
    checked = await client.post(
        f"/console/integrations/{smtp['id']}/check", data={"csrf_token": csrf}
    )
    assert "check failed" in checked.text
    assert "check:" in (await client.get("/console/integrations")).text  # the last error
    assert (await client.post(f"/console/integrations/{sg['id']}/delete")).status_code == 403
    gone = await client.post(f"/console/integrations/{sg['id']}/delete", data={"csrf_token": csrf})
    assert gone.status_code == 303
    assert len((await client.get("/v1/integrations", headers=rest)).json()) == 1

    # Another tenant's console does not find it.
    other = await _key(database)
    csrf_other = await sign_in(client, other)
    foreign = await client.post(
        f"/console/integrations/{smtp['id']}/delete", data={"csrf_token": csrf_other}
    )
    assert foreign.status_code == 404
    assert (await client.get(f"/v1/integrations/{smtp['id']}", headers=rest)).status_code == 200
