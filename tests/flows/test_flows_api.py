"""``/v1/flows`` and ``/v1/flow-runs`` on the real app in this process (real PostgreSQL,
no Temporal): versions, the 422 naming a step path, scopes, test keys, tenants, and
hostile input. Triggers and runs on the whole stack are in ``test_flows_stack.py``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from herald.db import make_engine
from herald.flows import store
from herald.flows.models import DigestJoin, RunIdentity, ThrottleRequest
from herald.settings import Settings
from herald.tenants import create_api_key, ensure_tenant
from tests.api.in_process import in_process_client, in_process_settings, migrated_database
from tests.harness import new_run_id


@pytest.fixture(scope="module")
def database() -> Iterator[Settings]:
    with migrated_database(in_process_settings()) as settings:
        yield settings


@pytest.fixture(scope="module")
async def keys(database: Settings) -> dict[str, str]:
    name = f"flows-{new_run_id()}"
    engine = make_engine(database, pool_size=1)
    try:
        return {
            "live": await create_api_key(engine, name),
            "test": await create_api_key(engine, name, test=True),
            "read": await create_api_key(engine, name, scopes=frozenset({"read"})),
            "send": await create_api_key(engine, name, scopes=frozenset({"send"})),
            "other": await create_api_key(engine, f"{name}-other"),
        }
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
async def client(database: Settings, keys: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process_client(database, keys["live"]) as made:
        templates = [("welcome", "email"), ("welcome", "push"), ("nudge", "email")]
        for key, channel in templates:
            created = await made.post(
                "/v1/templates",
                json={"key": key, "channel": channel, "subject": "Hi", "body": "Hello"},
            )
            assert created.status_code == 201, created.text
        yield made


def as_key(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def send(step_id: str, channel: str = "email", template: str = "welcome") -> dict[str, Any]:
    return {"id": step_id, "type": "send", "channel": channel, "template": template}


TWO_EMAILS = {
    "name": "Welcome",
    "steps": [send("first"), {"id": "pause", "type": "delay", "seconds": 3600}, send("second")],
}


def where(answer: httpx.Response) -> str:
    assert answer.status_code == 422, answer.text
    return str(answer.json()["detail"][0]["loc"][-1])


async def test_versions_first_201_then_200_and_each_stays_readable(
    client: httpx.AsyncClient,
) -> None:
    key = f"welcome-{uuid.uuid4().hex[:6]}"
    first = await client.put(f"/v1/flows/{key}", json=TWO_EMAILS)
    assert first.status_code == 201, first.text
    assert first.json()["version"] == 1
    assert first.json()["steps"][1] == {"id": "pause", "type": "delay", "seconds": 3600}
    second = await client.put(f"/v1/flows/{key}", json={"steps": [send("only", "push")]})
    assert second.status_code == 200, second.text
    assert second.json()["version"] == 2

    latest = await client.get(f"/v1/flows/{key}")
    assert latest.json()["version"] == 2
    old = await client.get(f"/v1/flows/{key}", params={"version": 1})
    assert old.json()["name"] == "Welcome" and len(old.json()["steps"]) == 3
    assert (await client.get(f"/v1/flows/{key}", params={"version": 3})).status_code == 404
    assert (await client.get("/v1/flows/never-made")).status_code == 404


async def test_list_is_paginated_by_key_with_latest_versions(client: httpx.AsyncClient) -> None:
    prefix = uuid.uuid4().hex[:6]
    for index in range(3):
        for _ in range(index + 1):
            put = await client.put(f"/v1/flows/{prefix}-{index}", json=TWO_EMAILS)
            assert put.status_code in (200, 201)
    seen: dict[str, int] = {}
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/flows", params=params)).json()
        seen |= {item["key"]: item["version"] for item in page["items"]}
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert {key: version for key, version in seen.items() if key.startswith(prefix)} == {
        f"{prefix}-0": 1,
        f"{prefix}-1": 2,
        f"{prefix}-2": 3,
    }
    bad = await client.get("/v1/flows", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422


async def test_a_422_names_the_step_path(client: httpx.AsyncClient) -> None:
    nested = {
        "steps": [
            send("first"),
            {
                "id": "check",
                "type": "branch",
                "if": {"path": "data.plan", "op": "eq", "value": "pro"},
                "then": [{"id": "x", "type": "send", "channel": "email"}],
            },
        ]
    }
    assert where(await client.put("/v1/flows/bad", json=nested)) == "steps[1].then[0].template"
    # Templates must exist for the step's channel (and its fallbacks).
    no_sms = {"steps": [send("first"), send("text", "sms")]}
    answer = await client.put("/v1/flows/bad", json=no_sms)
    assert where(answer) == "steps[1].template"
    assert "no sms template 'welcome'" in answer.json()["detail"][0]["msg"]
    fallback = {"steps": [{**send("first", "email", "nudge"), "fallback": ["push"]}]}
    assert where(await client.put("/v1/flows/bad", json=fallback)) == "steps[0].fallback"
    digest = {"id": "d", "type": "digest", "window_seconds": 10}
    twice = {"steps": [digest, send("s"), {**digest, "id": "again"}]}
    answer = await client.put("/v1/flows/bad", json=twice)
    assert where(answer) == "steps[2].type" and "at most one digest step" in answer.text
    for field, value in [
        ("window_seconds", 0),
        ("window_seconds", 10**9),
        ("window_seconds", "ten"),
        ("max_items", 0),
        ("max_items", 10**6),
        ("key", "data.a\x00"),
        ("key", "data." + "k" * 300),
        ("key", "recipient.email"),
        ("surprise", 1),
    ]:
        hostile = {"steps": [{**digest, field: value}, send("s")]}
        assert where(await client.put("/v1/flows/bad", json=hostile)) == f"steps[0].{field}"
    assert (await client.get("/v1/flows/bad")).status_code == 404  # nothing half-saved


async def test_hostile_input(client: httpx.AsyncClient) -> None:
    assert where(await client.put("/v1/flows/nul", json={**TWO_EMAILS, "name": "a\x00"})) == (
        "name"
    )
    assert where(await client.put("/v1/flows/huge", json={**TWO_EMAILS, "name": "n" * 300})) == (
        "name"
    )
    assert (await client.put("/v1/flows/bad%00key", json=TWO_EMAILS)).status_code == 422
    assert (await client.put("/v1/flows/" + "k" * 200, json=TWO_EMAILS)).status_code == 422
    assert (await client.put("/v1/flows/list", json=["steps"])).status_code == 422
    malformed = await client.put(
        "/v1/flows/malformed",
        content=b'{"steps": [',
        headers={"Content-Type": "application/json"},
    )
    assert malformed.status_code == 422
    many = {"steps": [{"id": f"d{i}", "type": "delay", "seconds": 1} for i in range(51)]}
    assert where(await client.put("/v1/flows/many", json=many)) == "steps"
    nul_data = await client.post(
        "/v1/flows/whatever/trigger", json={"recipients": ["ada"], "data": {"x": "\x00"}}
    )
    assert where(nul_data) == "data"
    huge = await client.post(
        "/v1/flows/whatever/trigger", json={"recipients": ["ada"], "data": {"x": "y" * 70_000}}
    )
    assert where(huge) == "data" and "at most" in huge.text
    too_many = await client.post(
        "/v1/flows/whatever/trigger", json={"recipients": [f"u{i}" for i in range(1001)]}
    )
    assert where(too_many) == "recipients"
    neither = await client.post("/v1/flows/whatever/trigger", json={"data": {}})
    assert neither.status_code == 422
    unknown = await client.post("/v1/flows/never-made/trigger", json={"recipients": ["ada"]})
    assert unknown.status_code == 404
    for topic in ("a\x00b", "t" * 200, "bad topic", 7, ["news"]):
        hostile = await client.post("/v1/flows/whatever/trigger", json={"topic": topic})
        assert where(hostile) == "topic", topic
    nul_key = await client.post("/v1/flow-runs/cancel", json={"cancellation_key": "k\x00"})
    assert where(nul_key) == "cancellation_key"
    assert (await client.get("/v1/flow-runs", params={"flow": "a\x00"})).status_code == 422
    assert (await client.get("/v1/flow-runs", params={"cursor": "zz"})).status_code == 422
    assert (await client.get(f"/v1/flow-runs/{uuid.uuid4()}")).status_code == 404
    assert (await client.get("/v1/flow-runs/not-a-uuid")).status_code == 422


async def test_scopes_test_keys_and_tenants(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    key = f"scoped-{uuid.uuid4().hex[:6]}"
    assert (await client.put(f"/v1/flows/{key}", json=TWO_EMAILS)).status_code == 201
    # A test key and a read key may read, not change.
    for kind in ("test", "read"):
        read = await client.get(f"/v1/flows/{key}", headers=as_key(keys[kind]))
        assert read.status_code == 200, (kind, read.text)
        change = await client.put(f"/v1/flows/{key}", json=TWO_EMAILS, headers=as_key(keys[kind]))
        assert change.status_code == 403, (kind, change.text)
    # A send key triggers and reads runs, but neither reads nor changes definitions.
    sender = as_key(keys["send"])
    assert (await client.put(f"/v1/flows/{key}", json=TWO_EMAILS, headers=sender)).status_code == (
        403
    )
    assert (await client.get(f"/v1/flows/{key}", headers=sender)).status_code == 403
    assert (await client.get("/v1/flow-runs", headers=sender)).status_code == 200
    read_trigger = await client.post(
        f"/v1/flows/{key}/trigger", json={"recipients": ["ada"]}, headers=as_key(keys["read"])
    )
    assert read_trigger.status_code == 403
    # Another tenant sees none of it.
    other = as_key(keys["other"])
    assert (await client.get(f"/v1/flows/{key}", headers=other)).status_code == 404
    listed = (await client.get("/v1/flows", headers=other, params={"limit": 500})).json()
    assert key not in {item["key"] for item in listed["items"]}
    trigger = await client.post(
        f"/v1/flows/{key}/trigger", json={"recipients": ["ada"]}, headers=other
    )
    assert trigger.status_code == 404
    # Topics: a read key may not trigger; another tenant's topic is no topic of this one,
    # for a live or a test key.
    topic = f"topic-{uuid.uuid4().hex[:6]}"
    assert (await client.put(f"/v1/topics/{topic}", json={}, headers=other)).status_code == 201
    by_topic = {"topic": topic}
    refused = await client.post(
        f"/v1/flows/{key}/trigger", json=by_topic, headers=as_key(keys["read"])
    )
    assert refused.status_code == 403
    for kind in ("live", "test"):
        theirs = await client.post(
            f"/v1/flows/{key}/trigger", json=by_topic, headers=as_key(keys[kind])
        )
        assert where(theirs) == "topic" and "no topic" in theirs.text, (kind, theirs.text)


async def test_digest_windows_gather_each_run_once_however_runs_race(
    database: Settings,
) -> None:
    """Ten runs reach a digest of at most 4 at once: windows of 4, 4 and 2, each run in
    exactly one; a retried join answers the same; closing a window shuts out later runs;
    the carrier reads every member's data, its own first."""
    engine = make_engine(database, pool_size=10)
    try:
        tenant = await ensure_tenant(engine, f"digest-{new_run_id()}")
        now = datetime.now(UTC)

        def request(run_id: uuid.UUID, at: datetime, n: int, key: str = "t") -> DigestJoin:
            run = RunIdentity(
                run_id=run_id,
                tenant_id=tenant.id,
                flow_key="digest",
                version=1,
                user_id="ada",
                trigger_id=uuid.uuid4(),
                created_at=at,
            )
            return DigestJoin(
                run=run,
                step_id="batch",
                key=key,
                window_seconds=60,
                max_items=4,
                data={"n": n},
                at=at,
            )

        runs = [uuid.uuid4() for _ in range(10)]
        joined = await asyncio.gather(
            *(store.join_digest(engine, request(r, now, n)) for n, r in enumerate(runs))
        )
        carriers: dict[uuid.UUID, list[uuid.UUID]] = {}
        for run_id, answer in zip(runs, joined, strict=True):
            carriers.setdefault(answer.carrier, []).append(run_id)
        assert sorted(len(members) for members in carriers.values()) == [2, 4, 4]
        assert all(carrier in members for carrier, members in carriers.items())
        again = [await store.join_digest(engine, request(r, now, 0)) for r in runs]
        assert [a.carrier for a in again] == [a.carrier for a in joined]

        [open_one] = [c for c, members in carriers.items() if len(members) == 2]
        index = runs.index(open_one)
        assert await store.close_digest(engine, request(open_one, now, index)) == 2
        items = await store.digest_items(engine, open_one)
        assert items[0] == {"n": index} and len(items) == 2
        # Closed (and the full ones too): a later run opens its own window.
        late = uuid.uuid4()
        assert (await store.join_digest(engine, request(late, now, 99))).carrier == late
        # Another key, or a run after the window, is another window.
        other = uuid.uuid4()
        assert (await store.join_digest(engine, request(other, now, 1, key="x"))).carrier == other
        later = uuid.uuid4()
        after = now + timedelta(seconds=61)
        assert (await store.join_digest(engine, request(later, after, 1))).carrier == later
    finally:
        await engine.dispose()


async def test_a_throttle_admits_exactly_its_limit_however_runs_race(database: Settings) -> None:
    """Ten runs reach a throttle of 3 at once: 3 go on, 7 are throttled, and a retried
    step answers what it answered first."""
    engine = make_engine(database, pool_size=10)
    try:
        tenant = await ensure_tenant(engine, f"throttle-{new_run_id()}")
        now = datetime.now(UTC)

        def request(run_id: uuid.UUID, at: datetime) -> ThrottleRequest:
            run = RunIdentity(
                run_id=run_id,
                tenant_id=tenant.id,
                flow_key="digest",
                version=1,
                user_id="ada",
                trigger_id=uuid.uuid4(),
                created_at=at,
            )
            return ThrottleRequest(
                run=run, step_id="limit", key="", limit=3, window_seconds=60, at=at
            )

        runs = [uuid.uuid4() for _ in range(10)]
        answers = await asyncio.gather(*(store.throttle(engine, request(r, now)) for r in runs))
        assert sum(answers) == 3
        again = [await store.throttle(engine, request(r, now)) for r in runs]
        assert again == answers
        # A later window has room again; another key has its own count.
        later = now + timedelta(seconds=61)
        assert await store.throttle(engine, request(uuid.uuid4(), later)) is True
        other_key = request(uuid.uuid4(), now).model_copy(update={"key": "billing"})
        assert await store.throttle(engine, other_key) is True
    finally:
        await engine.dispose()
