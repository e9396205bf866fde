"""Every way in keeps a key to what it is for: one table of doors by checks.

The doors are the seven ways a notification starts: the single REST route, the batch
route, a queued message, a broadcast's fan-out, a digest's send, resend, and the replay
of a dead-lettered failure. For each, a test key's request goes through the lifecycle a
live one would have and never reaches a provider; a test key's idempotency keys never
meet a live key's; and a test key cannot see or act on live notifications or
broadcasts.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from bridge.deadletters import replay_dead
from devtools.processes import ManagedProcess
from devtools.sinks import Rule, Sinks
from herald.contracts import Channel, QueuedNotification
from herald.db import make_engine
from herald.producer import NotificationProducer
from herald.tenants import create_api_key
from tests.harness import Stack, Tenant, new_run_id, new_tenant, producer_settings, wait_for_status

DOORS = ["single", "batch", "bridge", "broadcast", "digest", "resend", "dead_letter_replay"]


@dataclass
class Keys:
    """One tenant seen through a live key and a test key."""

    live: Tenant
    test: Tenant
    stack: Stack


@pytest.fixture(scope="module")
async def keys(stack: Stack) -> AsyncIterator[Keys]:
    """A tenant with a live and a test key."""
    live = await new_tenant(stack, f"doors-{new_run_id()}")
    engine = make_engine(stack.settings, pool_size=1)
    try:
        test_key = await create_api_key(engine, live.name, test=True)
    finally:
        await engine.dispose()
    test = Tenant(
        httpx.AsyncClient(
            base_url=stack.api_url, headers={"Authorization": f"Bearer {test_key}"}, timeout=30
        ),
        live.name,
    )
    yield Keys(live, test, stack)
    await live.client.aclose()
    await test.client.aclose()


async def _eventually(probe: Callable[[], Awaitable[Any]], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await probe()
        if found:
            return found
        await asyncio.sleep(0.3)
    raise AssertionError(f"{probe} found nothing in {timeout}s")


async def _through(
    door: str, keys: Keys, user: dict[str, Any], template: str, as_key: Tenant, *, test: bool
) -> tuple[str, str]:
    """Start a notification for ``user`` through ``door`` with ``as_key``; its id and the
    status it ends in."""
    client = as_key.client
    body = {"channel": "email", "user_id": user["id"], "template": template, "data": {"n": 1}}
    match door:
        case "single":
            response = await client.post(
                "/v1/notifications", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
            )
            assert response.status_code == 202, response.text
            return response.json()["id"], "sent"
        case "batch":
            response = await client.post(
                "/v1/notifications/batch",
                json={"notifications": [body | {"idempotency_key": uuid.uuid4().hex}]},
            )
            (result,) = response.json()["results"]
            assert result["status"] == 202, result
            return result["id"], "sent"
        case "bridge":
            request = QueuedNotification(
                id=uuid.uuid4(),
                channel=Channel.email,
                user_id=user["id"],
                template=template,
                data={"n": 1},
            )
            as_producer = await producer_settings(keys.stack.settings, keys.live.name, test=test)
            async with NotificationProducer(settings=as_producer) as producer:
                await producer.publish(request)
            return str(request.id), "sent"
        case "broadcast":
            response = await client.post(
                "/v1/broadcasts",
                json={
                    "channel": "email",
                    "template": template,
                    "data": {"n": 1},
                    "audience": {"user_ids": [user["id"]]},
                },
            )
            assert response.status_code == 202, response.text
            broadcast_id = response.json()["id"]

            async def recipient() -> str | None:
                page = await client.get("/v1/notifications", params={"broadcast_id": broadcast_id})
                items = page.json()["items"]
                return str(items[0]["id"]) if items else None

            return await _eventually(recipient), "sent"
        case "digest":
            response = await client.post(
                "/v1/notifications",
                json=body | {"digest": {"key": uuid.uuid4().hex, "window_seconds": 1}},
            )
            assert response.status_code == 202, response.text
            return response.json()["id"], "sent"
        case "resend":
            first, _ = await _through("single", keys, user, template, as_key, test=test)
            await wait_for_status(client, first, {"sent"})
            response = await client.post(f"/v1/notifications/{first}/resend")
            assert response.status_code == 202, response.text
            assert response.json()["cycle"] == 2
            return first, "sent"
        case "dead_letter_replay":
            # The address fails for good in test mode (and at the sink for a live key):
            # the failure is dead-lettered, and its replay is a second send cycle.
            response = await client.post("/v1/notifications", json=body)
            assert response.status_code == 202, response.text
            notification_id = response.json()["id"]
            await wait_for_status(client, notification_id, {"failed"})

            async def replayed() -> bool:
                done = await replay_dead(keys.stack.settings, wanted=notification_id)
                return any(item.result.value == "resent" for item in done)

            await _eventually(replayed)

            async def second_cycle() -> bool:
                found = (await client.get(f"/v1/notifications/{notification_id}")).json()
                return found.get("cycle", 1) == 2 and found["status"] == "failed"

            await _eventually(second_cycle)
            return notification_id, "failed"
    raise AssertionError(door)


@pytest.mark.parametrize("door", DOORS)
async def test_a_test_key_never_reaches_a_provider_and_ends_as_a_live_one_would(
    door: str,
    keys: Keys,
    sinks: Sinks,
    bridge: ManagedProcess,
) -> None:
    # A digest's template gets ``count`` and ``items`` instead of a request's data.
    body = "n={{ n if n is defined else count }}"
    template = await keys.live.template("email", body, body)
    failing = door == "dead_letter_replay"
    outcomes = {}
    for as_key, test in ((keys.live, False), (keys.test, True)):
        local = f"{door}-{uuid.uuid4().hex[:8]}{'+fail' if failing and test else ''}"
        user = await keys.live.user(email=f"{local}@example.com")
        if failing and not test:
            # The live key's address is refused for good by the SMTP server.
            sinks.state.add_rule(Rule(match=user["email"], always=550))
        notification_id, wanted = await _through(door, keys, user, template, as_key, test=test)
        final = await wait_for_status(as_key.client, notification_id, {wanted}, timeout=90)
        outcomes[test] = (final, user)

    live, live_user = outcomes[False]
    test_final, test_user = outcomes[True]
    assert live["status"] == test_final["status"]
    assert live.get("test") is False and test_final.get("test") is True
    if not failing:
        assert sinks.state.received("email", to=live_user["email"]), "the live one was sent"
    assert sinks.state.received("email", to=test_user["email"]) == []
    # The test key sees only its own.
    assert (await keys.test.client.get(f"/v1/notifications/{live['id']}")).status_code == 404


async def test_idempotency_keys_of_test_and_live_keys_never_meet(keys: Keys) -> None:
    user = await keys.live.user()
    template = await keys.live.template("email", "n={{ n }}", "n={{ n }}")
    body = {"channel": "email", "user_id": user["id"], "template": template, "data": {"n": 1}}
    shared = f"shared-{uuid.uuid4().hex}"

    ids = {}
    for name, key in (("live", keys.live), ("test", keys.test)):
        single = await key.client.post(
            "/v1/notifications", json=body, headers={"Idempotency-Key": shared}
        )
        assert single.status_code == 202, single.text
        batch = await key.client.post(
            "/v1/notifications/batch",
            json={"notifications": [body | {"idempotency_key": f"{shared}-b"}]},
        )
        assert batch.json()["results"][0]["status"] == 202
        broadcast = await key.client.post(
            "/v1/broadcasts",
            json={
                "channel": "email",
                "template": template,
                "data": {"n": 1},
                "audience": {"user_ids": [user["id"]]},
            },
            headers={"Idempotency-Key": shared},
        )
        assert broadcast.status_code == 202, broadcast.text
        ids[name] = (
            single.json()["id"],
            batch.json()["results"][0]["id"],
            broadcast.json()["id"],
        )
    assert not set(ids["live"]) & set(ids["test"])

    # Each key replays its own, and only its own.
    again = await keys.test.client.post(
        "/v1/notifications", json=body, headers={"Idempotency-Key": shared}
    )
    assert again.status_code == 200 and again.json()["id"] == ids["test"][0]
    # A test producer cannot take over a live message's id.
    live_single = ids["live"][0]
    assert (await keys.test.client.get(f"/v1/notifications/{live_single}")).status_code == 404


async def test_a_test_key_sees_and_acts_on_no_live_notification_or_broadcast(keys: Keys) -> None:
    user = await keys.live.user()
    template = await keys.live.template("email", "n={{ n }}", "n={{ n }}")
    live_id = await keys.live.send(
        "email", user["id"], template, {"n": 1}, send_at="2099-01-01T00:00:00Z"
    )
    broadcast = await keys.live.client.post(
        "/v1/broadcasts",
        json={
            "channel": "email",
            "template": template,
            "data": {"n": 1},
            "audience": {"user_ids": [user["id"]]},
            "send_at": "2099-01-01T00:00:00Z",
        },
    )
    broadcast_id = broadcast.json()["id"]
    test = keys.test.client
    for method, path in (
        ("GET", f"/v1/notifications/{live_id}"),
        ("GET", f"/v1/notifications/{live_id}/events"),
        ("POST", f"/v1/notifications/{live_id}/cancel"),
        ("POST", f"/v1/notifications/{live_id}/resend"),
        ("GET", f"/v1/broadcasts/{broadcast_id}"),
        ("POST", f"/v1/broadcasts/{broadcast_id}/cancel"),
    ):
        response = await test.request(method, path)
        assert response.status_code == 404, (method, path, response.text)
    receipt = await test.post(f"/v1/notifications/{live_id}/receipt", json={"status": "delivered"})
    assert receipt.status_code == 404, receipt.text
    listed = (await test.get("/v1/notifications", params={"user_id": user["id"]})).json()
    assert listed["items"] == []
    assert broadcast_id not in {b["id"] for b in (await test.get("/v1/broadcasts")).json()["items"]}
    # It may read the shared users and templates, never change them.
    assert (await test.get(f"/v1/users/{user['id']}")).status_code == 200
    assert (await test.get(f"/v1/templates/{template}")).status_code == 200
    for method, path, body in (
        ("PUT", f"/v1/users/{user['id']}", {"email": "taken@example.com"}),
        ("POST", "/v1/users", {"id": f"u-{uuid.uuid4().hex[:8]}"}),
        ("PUT", f"/v1/templates/{template}", {"channel": "email", "body": "changed"}),
        ("POST", "/v1/templates", {"key": "new", "channel": "email", "body": "x"}),
    ):
        response = await test.request(method, path, json=body)
        assert response.status_code == 403, (method, path, response.text)
        assert "test key" in response.json()["detail"]
    # The live notification is untouched, and the live key still cancels it.
    assert (await keys.live.client.post(f"/v1/notifications/{live_id}/cancel")).status_code == 202


async def test_digests_never_mix_test_and_live_requests(keys: Keys, sinks: Sinks) -> None:
    user = await keys.live.user()
    template = await keys.live.template("email", "{{ count }} items", "{{ count }} items")
    digest = {"key": f"mix-{uuid.uuid4().hex[:8]}", "window_seconds": 2}
    body = {"channel": "email", "user_id": user["id"], "template": template, "digest": digest}
    ids = {}
    for name, key in (("live", keys.live), ("test", keys.test), ("live2", keys.live)):
        response = await key.client.post("/v1/notifications", json=body | {"data": {"k": name}})
        assert response.status_code == 202, response.text
        ids[name] = response.json()["id"]
    live = await wait_for_status(keys.live.client, ids["live"], {"sent"})
    test = await wait_for_status(keys.test.client, ids["test"], {"sent"})
    live2 = await wait_for_status(keys.live.client, ids["live2"], {"sent"})
    assert live["digest_id"] == live2["digest_id"] != test["digest_id"]
    assert test["test"] is True
    received = sinks.state.received("email", to=user["email"])
    assert [message.subject for message in received] == ["2 items"]
