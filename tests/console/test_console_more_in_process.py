"""The console's webhooks and topics pages, the broadcast filter of the notifications
list, and their tenant isolation, against the real app in this process on a real
PostgreSQL database (nothing here reaches Temporal; broadcasts run in the browser test)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from api.schemas.topics import TopicIn
from api.services import topics
from herald.db import make_engine
from herald.settings import Settings
from herald.tenants import ensure_tenant, issue_api_key
from tests.api.in_process import in_process_client, in_process_settings, migrated_database
from tests.console.support import sign_in
from tests.harness import new_run_id


@pytest.fixture(scope="module")
def database() -> Iterator[Settings]:
    settings = in_process_settings(console_secure_cookie=False, webhooks_allow_private=True)
    with migrated_database(settings) as made:
        yield made


@pytest.fixture
async def client(database: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process_client(database) as made:
        yield made


async def _tenant_key(settings: Settings) -> tuple[uuid.UUID, str]:
    engine = make_engine(settings, pool_size=1)
    try:
        tenant = await ensure_tenant(engine, f"console-{new_run_id()}")
        key, _ = await issue_api_key(engine, tenant.id)
        return tenant.id, key
    finally:
        await engine.dispose()


async def test_a_webhook_made_in_the_console_shows_its_secret_once_and_can_be_deleted(
    database: Settings, client: httpx.AsyncClient
) -> None:
    _, key = await _tenant_key(database)
    csrf = await sign_in(client, key)
    made = await client.post(
        "/console/webhooks",
        data={
            "url": "http://127.0.0.1:9/hooks",
            "events": ["sent", "failed"],
            "csrf_token": csrf,
        },
    )
    assert made.status_code == 201, made.text
    assert made.headers["cache-control"] == "no-store"
    rest = {"Authorization": f"Bearer {key}"}
    [endpoint] = (await client.get("/v1/webhooks", headers=rest)).json()
    assert endpoint["events"] == ["failed", "sent"]
    secret = made.text.split("data-new-secret")[0].rsplit('value="', 1)[1].split('"')[0]
    assert secret.startswith("whsec_")

    listed = await client.get("/console/webhooks")
    assert "http://127.0.0.1:9/hooks" in listed.text and secret not in listed.text
    page = await client.get(f"/console/webhooks/{endpoint['id']}")
    assert "Nothing delivered yet." in page.text and secret not in page.text

    refused = await client.post(
        "/console/webhooks",
        data={"url": "http://127.0.0.1:9/x", "events": ["nope"], "csrf_token": csrf},
    )
    assert refused.status_code == 422 and "unknown event" in refused.text
    without_csrf = await client.post(f"/console/webhooks/{endpoint['id']}/delete")
    assert without_csrf.status_code == 403
    deleted = await client.post(
        f"/console/webhooks/{endpoint['id']}/delete", data={"csrf_token": csrf}
    )
    assert deleted.status_code == 303
    assert (await client.get("/v1/webhooks", headers=rest)).json() == []
    assert (await client.get(f"/console/webhooks/{endpoint['id']}")).status_code == 404


async def test_topics_show_their_subscriber_counts(
    database: Settings, client: httpx.AsyncClient
) -> None:
    tenant_id, key = await _tenant_key(database)
    engine = make_engine(database, pool_size=1)
    try:
        await topics.put_topic(engine, tenant_id, "news", TopicIn(name="Newsletter"))
        await topics.subscribe(engine, tenant_id, "news", ["ada", "bob", "cy"])
        await topics.put_topic(engine, tenant_id, "quiet", TopicIn())
    finally:
        await engine.dispose()
    await sign_in(client, key)
    listed = (await client.get("/console/topics")).text
    assert 'data-topic="news"' in listed and 'data-topic="quiet"' in listed
    news_row = listed.split('data-topic="news"')[1].split("</tr>")[0]
    assert "Newsletter" in news_row and "data-subscribers>3</td>" in news_row
    one = await client.get("/console/topics/news")
    assert one.status_code == 200 and '<dd id="subscribers">3</dd>' in one.text
    assert (await client.get("/console/topics/missing")).status_code == 404


async def test_another_tenants_webhooks_topics_and_broadcasts_are_not_found(
    database: Settings, client: httpx.AsyncClient
) -> None:
    theirs, their_key = await _tenant_key(database)
    engine = make_engine(database, pool_size=1)
    try:
        await topics.put_topic(engine, theirs, "theirs", TopicIn(name="Theirs"))
    finally:
        await engine.dispose()
    made = await client.post(
        "/v1/webhooks",
        json={"url": "http://127.0.0.1:9/theirs"},
        headers={"Authorization": f"Bearer {their_key}"},
    )
    assert made.status_code == 201, made.text
    endpoint = made.json()["id"]
    _, key = await _tenant_key(database)
    csrf = await sign_in(client, key)
    for path in (
        f"/console/webhooks/{endpoint}",
        f"/console/webhooks/{endpoint}/deliveries",
        "/console/webhooks/not-a-uuid",
        "/console/topics/theirs",
        f"/console/broadcasts/{uuid.uuid4()}",
        f"/console/broadcasts/{uuid.uuid4()}/live",
        "/console/broadcasts/not-a-uuid",
    ):
        assert (await client.get(path)).status_code == 404, path
    gone = await client.post(f"/console/webhooks/{endpoint}/delete", data={"csrf_token": csrf})
    assert gone.status_code == 404
    assert "http://127.0.0.1:9/theirs" not in (await client.get("/console/webhooks")).text
    assert "theirs" not in (await client.get("/console/topics")).text
    assert "No broadcasts" in (await client.get("/console/broadcasts")).text


async def test_the_notifications_list_filters_by_broadcast(
    database: Settings, client: httpx.AsyncClient
) -> None:
    _, key = await _tenant_key(database)
    await sign_in(client, key)
    wanted = uuid.uuid4()
    page = await client.get(f"/console/notifications?broadcast_id={wanted}")
    assert page.status_code == 200
    assert f'name="broadcast_id" value="{wanted}"' in page.text
    assert f"/console/notifications/rows?broadcast_id={wanted}" in page.text  # the refresh keeps it
    assert "No notifications match these filters" in page.text
    ignored = await client.get("/console/notifications?broadcast_id=not-an-id")
    assert ignored.status_code == 200 and 'name="broadcast_id" value=""' in ignored.text
