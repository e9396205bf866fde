"""A request whose ``data`` lacks a variable the template needs is refused at the door,
naming the variables, through every way in: a single request, a batch item (alone), a
queued message (dead-lettered with the reason) and a broadcast (before anyone starts)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from cachetools import LRUCache
from sqlalchemy import insert

from devtools.processes import ManagedProcess
from devtools.sinks import Sinks
from herald import submission
from herald.contracts import Channel, QueuedNotification
from herald.db import Template, make_engine
from herald.producer import NotificationProducer
from herald.tenants import ensure_tenant
from tests.bridge.support import wait_dead
from tests.harness import Stack, Tenant, new_run_id, producer_settings, wait_for_status

# ``promo`` and ``footer`` are optional: guarded by ``is defined`` and ``default``.
BODY = (
    "<p>{{ name }}, your code is {{ code }}."
    "{% if promo is defined %} {{ promo }}{% endif %}{{ footer|default('') }}</p>"
)


def refusal(response: httpx.Response) -> tuple[list[Any], str]:
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    return error["loc"], error["msg"]


async def test_a_request_without_a_needed_variable_is_refused_naming_them(
    tenant: Tenant, sinks: Sinks
) -> None:
    user = await tenant.user()
    key = await tenant.template("email", BODY, "Welcome, {{ name }}")
    request = {"channel": "email", "user_id": user["id"], "template": key}

    refused = await tenant.client.post("/v1/notifications", json=request | {"data": {}})
    assert refusal(refused) == (
        ["body", "data"],
        f"template {key!r} (email, version 1) needs data: code, name",
    )
    partly = await tenant.client.post("/v1/notifications", json=request | {"data": {"code": 1}})
    assert refusal(partly)[1].endswith("needs data: name")
    listed = await tenant.client.get("/v1/notifications", params={"user_id": user["id"]})
    assert listed.json()["items"] == []  # nothing was half-created

    # The optional ones may be left out.
    nid = await tenant.send("email", user["id"], key, {"name": "Ada", "code": "4711"})
    assert (await wait_for_status(tenant.client, nid))["status"] == "sent"

    # A new version counts at once: this one needs no code, and says which version.
    changed = await tenant.client.put(
        f"/v1/templates/{key}",
        json={"key": key, "channel": "email", "subject": "Hi", "body": "<p>{{ name }}</p>"},
    )
    assert changed.status_code == 200, changed.text
    assert (await tenant.client.post("/v1/notifications", json=request | {"data": {}})).json()[
        "detail"
    ][0]["msg"] == f"template {key!r} (email, version 2) needs data: name"
    accepted = await tenant.client.post(
        "/v1/notifications", json=request | {"data": {"name": "Ada"}}
    )
    assert accepted.status_code == 202, accepted.text


async def test_a_fallback_channel_and_an_urgent_digest_request_are_checked_too(
    tenant: Tenant,
) -> None:
    user = await tenant.user()
    key = await tenant.template("email", "<p>Hi</p>", "Hi")
    await tenant.template("sms", "Your code is {{ code }}", None, key=key)
    refused = await tenant.client.post(
        "/v1/notifications",
        json={"channel": "email", "user_id": user["id"], "template": key, "fallback": ["sms"]},
    )
    assert refusal(refused) == (
        ["body", "data"],
        f"template {key!r} (sms, version 1) needs data: code",
    )

    # A digest's template gets ``items`` and ``count``: a request joining the digest is
    # one of its items and is not judged by it, an urgent one renders with its own data.
    digest = await tenant.template(
        "email", "<ul>{% for c in items %}<li>{{ c.text }}</li>{% endfor %}</ul>", "{{ count }} new"
    )
    body = {
        "channel": "email",
        "user_id": user["id"],
        "template": digest,
        "data": {"text": "Nice!"},
        "digest": {"key": uuid.uuid4().hex, "window_seconds": 1},
    }
    joined = await tenant.client.post("/v1/notifications", json=body)
    assert joined.status_code == 202, joined.text
    urgent = await tenant.client.post("/v1/notifications", json=body | {"priority": "urgent"})
    assert refusal(urgent)[1] == f"template {digest!r} (email, version 1) needs data: count, items"
    assert (await wait_for_status(tenant.client, joined.json()["id"]))["status"] == "sent"


async def test_only_the_batch_item_without_the_variable_fails(tenant: Tenant) -> None:
    user = await tenant.user()
    key = await tenant.template("sms", "Your code is {{ code }}", None)
    item = {"channel": "sms", "user_id": user["id"], "template": key}
    answer = await tenant.client.post(
        "/v1/notifications/batch",
        json={
            "notifications": [
                item | {"data": {"code": "1"}},
                item | {"data": {"cod": "2"}},
                item | {"data": {"code": "3"}},
            ]
        },
    )
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [result["status"] for result in results] == [202, 422, 202]
    (error,) = results[1]["error"]["detail"]
    assert error["loc"][-1] == "data"
    assert error["msg"] == f"template {key!r} (sms, version 1) needs data: code"


async def test_a_queued_message_without_the_variable_is_dead_lettered_with_the_reason(
    stack: Stack, bridge: ManagedProcess, tenant: Tenant
) -> None:
    user = await tenant.user()
    key = await tenant.template("sms", "Your code is {{ code }}", None)
    lacking, good = (
        QueuedNotification(
            id=uuid.uuid4(), channel=Channel.sms, user_id=user["id"], template=key, data=data
        )
        for data in ({"other": 1}, {"code": "4711"})
    )
    async with NotificationProducer(
        settings=await producer_settings(stack.settings, tenant.name)
    ) as producer:
        await producer.publish(lacking)
        await producer.publish(good)

    dead = await wait_dead(stack.settings, {str(lacking.id)})
    assert f"template {key!r} (sms, version 1) needs data: code" in dead[str(lacking.id)].reason
    assert (await wait_for_status(tenant.client, str(good.id)))["status"] == "sent"
    missing = await tenant.client.get(f"/v1/notifications/{lacking.id}")
    assert missing.status_code == 404  # never accepted


async def test_a_broadcast_without_the_variable_is_refused_before_anyone_starts(
    tenant: Tenant,
) -> None:
    users = [(await tenant.user())["id"] for _ in range(2)]
    key = await tenant.template("email", "<p>Version {{ version }} is out</p>", "News")
    broadcast = {"channel": "email", "template": key, "audience": {"user_ids": users}}

    refused = await tenant.client.post("/v1/broadcasts", json=broadcast | {"data": {}})
    assert refusal(refused) == (
        ["body", "data"],
        f"template {key!r} (email, version 1) needs data: version",
    )
    assert (await tenant.client.get("/v1/broadcasts")).json()["items"] == []
    assert (await tenant.client.get("/v1/notifications")).json()["items"] == []

    later = broadcast | {"data": {"version": "2.0"}, "send_at": "2099-01-01T00:00:00Z"}
    accepted = await tenant.client.post("/v1/broadcasts", json=later)
    assert accepted.status_code == 202, accepted.text
    cancelled = await tenant.client.post(f"/v1/broadcasts/{accepted.json()['id']}/cancel")
    assert cancelled.status_code == 202, cancelled.text


async def test_what_a_version_needs_is_worked_out_once_and_the_cache_is_bounded(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[str] = []
    required = submission.required_variables

    def counted(source: str) -> frozenset[str]:
        parsed.append(source)
        return required(source)

    monkeypatch.setattr(submission, "required_variables", counted)
    monkeypatch.setattr(submission, "_version_needs", LRUCache(maxsize=2))
    engine = make_engine(stack.settings, pool_size=1)
    try:
        tenant = await ensure_tenant(engine, f"needs-{new_run_id()}")

        async def add(key: str, version: int, body: str) -> None:
            async with engine.begin() as conn:
                await conn.execute(
                    Template.__table__.insert().values(
                        tenant_id=tenant.id,
                        key=key,
                        channel="sms",
                        locale="en",
                        version=version,
                        body=body,
                    )
                )

        async def needs(key: str) -> list[tuple[int, frozenset[str]]]:
            found = await submission.latest_versions_many(engine, tenant.id, {(key, Channel.sms)})
            return [(v.version, v.needs) for v in found[key, Channel.sms]]

        await add("a", 1, "{{ code }}")
        assert await needs("a") == [(1, frozenset({"code"}))]
        assert await needs("a") == [(1, frozenset({"code"}))]
        assert len(parsed) == 1  # once per version
        await add("a", 2, "{{ name }}")
        assert await needs("a") == [(2, frozenset({"name"}))]  # the new version at once
        assert len(parsed) == 2
        for key in ("b", "c"):
            await add(key, 1, "hi")
            await needs(key)
        assert await needs("a") == [(2, frozenset({"name"}))]
        assert len(parsed) == 5  # "a" v2 was forgotten by the full cache, and worked out again
    finally:
        await engine.dispose()


async def test_a_version_written_by_another_process_counts_without_asking_every_time(
    tenant: Tenant, stack: Stack
) -> None:
    """The API remembers a template's latest versions while it hears new ones from the
    templates trigger: a version written elsewhere (another API pod, a migration) counts
    a moment later, without the API being told."""
    user = await tenant.user()
    key = await tenant.template("sms", "{{ code }}", None)
    request = {"channel": "sms", "user_id": user["id"], "template": key, "data": {}}
    first = await tenant.client.post("/v1/notifications", json=request)
    assert refusal(first)[1].endswith("needs data: code")

    engine = make_engine(stack.settings, pool_size=1)
    try:
        async with engine.begin() as conn:
            tenant_id = (
                (
                    await conn.execute(
                        Template.__table__.select().where(Template.key == key).limit(1)
                    )
                )
                .mappings()
                .one()["tenant_id"]
            )
            await conn.execute(
                insert(Template).values(
                    tenant_id=tenant_id, key=key, channel="sms", locale="en", version=2, body="hi"
                )
            )
    finally:
        await engine.dispose()
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        answer = await tenant.client.post("/v1/notifications", json=request)
        if answer.status_code == 202:
            break
        assert refusal(answer)[1].endswith("needs data: code")
        assert asyncio.get_running_loop().time() < deadline, "the new version was never seen"
        await asyncio.sleep(0.05)


def test_latest_versions_are_remembered_only_while_heard() -> None:
    cache = submission.LatestVersions()
    tenant = uuid.uuid4()
    versions = [("welcome", "sms", "en", 1)]
    cache.remember(tenant, ("welcome", "sms"), versions, cache.generation)
    assert cache.get(tenant, ("welcome", "sms")) is None  # nobody listens: ask every time

    cache.listening.set()
    read_at = cache.generation
    cache.forget(f"{tenant}:sms:welcome")  # a new version while the answer was read
    cache.remember(tenant, ("welcome", "sms"), versions, read_at)
    assert cache.get(tenant, ("welcome", "sms")) is None
    cache.remember(tenant, ("welcome", "sms"), versions, cache.generation)
    assert cache.get(tenant, ("welcome", "sms")) == versions
    cache.forget(f"{tenant}:sms:welcome")
    assert cache.get(tenant, ("welcome", "sms")) is None
    cache.remember(tenant, ("welcome", "sms"), versions, cache.generation)
    cache.forget("not a payload")  # unreadable: forget everything
    assert cache.get(tenant, ("welcome", "sms")) is None
