"""The in-app inbox on the whole stack: a notification to ``inapp`` lands in the user's
feed, reading it moves the counts, the notification's events and its webhooks; user
tokens reach only their user's inbox and nothing else; counts stay exact under
concurrent writes; hostile input is refused by name."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from herald.db import make_engine
from herald.inbox import store, tokens
from herald.tenants import create_api_key
from tests.e2e.test_webhooks import Receiver, receivers  # noqa: F401 - the fixture
from tests.harness import Stack, Tenant, events, wait_for_status


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the condition never held")
        await asyncio.sleep(0.1)


async def token_for(tenant: Tenant, user_id: str, **body: Any) -> str:
    answer = await tenant.client.post("/v1/inbox/tokens", json={"user_id": user_id, **body})
    assert answer.status_code == 201, answer.text
    assert datetime.fromisoformat(answer.json()["expires_at"]) > datetime.now(UTC)
    return str(answer.json()["token"])


@pytest.fixture
async def inbox_of(stack: Stack) -> AsyncIterator[Callable[[str], httpx.AsyncClient]]:
    """A client of the inbox routes holding a user token."""
    made: list[httpx.AsyncClient] = []

    def client(token: str) -> httpx.AsyncClient:
        made.append(
            httpx.AsyncClient(
                base_url=stack.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
            )
        )
        return made[-1]

    yield client
    for each in made:
        await each.aclose()


async def feed(inbox: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    answer = await inbox.get("/v1/inbox/messages", params=params)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def landed(inbox: httpx.AsyncClient, count: int) -> dict[str, Any]:
    page: dict[str, Any] = {}

    async def arrived() -> bool:
        nonlocal page
        page = await feed(inbox)
        return len(page["items"]) >= count

    await eventually(arrived)
    return page


async def inapp_template(tenant: Tenant, key: str | None = None) -> str:
    return await tenant.template(
        "inapp", "Order {{ order }} has shipped", subject="Shipped, {{ name }}", key=key
    )


async def tenant_id(stack: Stack, tenant: Tenant) -> uuid.UUID:
    engine = make_engine(stack.settings, pool_size=1)
    try:
        async with engine.connect() as conn:
            found = await conn.execute(
                text("SELECT id FROM tenants WHERE name = :name"), {"name": tenant.name}
            )
            return uuid.UUID(str(found.scalar_one()))
    finally:
        await engine.dispose()


async def test_a_notification_lands_in_the_feed_and_reading_it_is_an_event(
    stack: Stack,
    tenant: Tenant,
    inbox_of: Callable[[str], httpx.AsyncClient],
    receivers: Callable[..., Receiver],  # noqa: F811
) -> None:
    receiver = receivers()
    hooked = await tenant.client.post("/v1/webhooks", json={"url": receiver.url, "events": ["*"]})
    assert hooked.status_code == 201, hooked.text
    user = await tenant.user(email=None, phone=None)  # no address needed in-app
    key = await inapp_template(tenant)
    nid = await tenant.send(
        "inapp",
        user["id"],
        key,
        {"name": "Ada", "order": "A-1", "action_url": "https://app.example.com/orders/A-1"},
    )
    inbox = inbox_of(await token_for(tenant, user["id"]))

    page = await landed(inbox, 1)
    [item] = page["items"]
    assert (item["notification_id"], item["title"], item["body"]) == (
        nid,
        "Shipped, Ada",
        "Order A-1 has shipped",
    )
    assert item["action_url"] == "https://app.example.com/orders/A-1"
    assert item["category"] == "transactional"
    assert item["seen_at"] is None and item["read_at"] is None
    assert page["counts"] == {"unseen": 1, "unread": 1, "total": 1}
    assert page["next_cursor"] is None
    assert (await wait_for_status(tenant.client, nid, {"sent"}, timeout=30))["provider"] == "inbox"

    read = await inbox.post(f"/v1/inbox/messages/{item['id']}/read")
    assert read.status_code == 200, read.text
    assert read.json()["counts"] == {"unseen": 0, "unread": 0, "total": 1}
    assert read.json()["message"]["read_at"] and read.json()["message"]["seen_at"]
    again = await inbox.post(f"/v1/inbox/messages/{item['id']}/read")
    assert again.json()["message"]["read_at"] == read.json()["message"]["read_at"]
    assert (await feed(inbox, filter="unread"))["items"] == []

    # Seen first: the in-app message is delivered.
    assert await wait_for_status(tenant.client, nid, {"delivered"}, timeout=10)
    statuses = [event["status"] for event in await events(tenant.client, nid)]
    assert statuses.count("seen") == 1 and statuses.count("read") == 1, statuses
    assert statuses.index("sent") < statuses.index("seen") < statuses.index("read")
    assert "delivered" in statuses

    def types() -> set[str]:
        return {delivery.json()["type"] for delivery in receiver.accepted()}

    await eventually(lambda: asyncio.sleep(0, "notification.read" in types()))
    assert {"notification.seen", "notification.delivered"} <= types()

    unread = await inbox.post(f"/v1/inbox/messages/{item['id']}/unread")
    assert unread.json()["counts"] == {"unseen": 0, "unread": 1, "total": 1}
    archived = await inbox.post(f"/v1/inbox/messages/{item['id']}/archive")
    assert archived.json()["counts"] == {"unseen": 0, "unread": 0, "total": 0}
    assert (await feed(inbox))["items"] == []
    assert [m["id"] for m in (await feed(inbox, archived="true"))["items"]] == [item["id"]]
    await eventually(lambda: asyncio.sleep(0, "notification.archived" in types()))
    back = await inbox.post(f"/v1/inbox/messages/{item['id']}/unarchive")
    assert back.json()["counts"] == {"unseen": 0, "unread": 1, "total": 1}


async def test_in_app_escalates_to_email_unless_it_is_opened_in_time(
    stack: Stack, tenant: Tenant, inbox_of: Callable[[str], httpx.AsyncClient], sinks: Any
) -> None:
    key = await inapp_template(tenant)
    await tenant.template("email", "Order {{ order }} has shipped", "Shipped", key=key)
    data = {"name": "Ada", "order": "B-2"}
    ignored, opened = await tenant.user(), await tenant.user()
    ignored_nid = await tenant.send(
        "inapp", ignored["id"], key, data, fallback=["email"], confirm_within_seconds=5
    )
    opened_nid = await tenant.send(
        "inapp", opened["id"], key, data, fallback=["email"], confirm_within_seconds=5
    )
    inbox = inbox_of(await token_for(tenant, opened["id"]))
    [item] = (await landed(inbox, 1))["items"]
    seen = await inbox.post("/v1/inbox/messages/bulk", json={"action": "seen"})
    assert seen.json() == {"changed": 1, "counts": {"unseen": 0, "unread": 1, "total": 1}}

    def emails(user: dict[str, Any]) -> list[Any]:
        return list(sinks.state.received("email", to=user["email"]))

    await eventually(lambda: asyncio.sleep(0, bool(emails(ignored))), seconds=40)
    final = await wait_for_status(tenant.client, opened_nid, {"delivered"}, timeout=15)
    assert final["status"] == "delivered"
    await asyncio.sleep(6)  # past the 5 s: the opened one never escalates
    assert emails(opened) == []
    assert len(emails(ignored)) == 1
    notes = [e.get("detail") or "" for e in await events(tenant.client, ignored_nid)]
    assert any("not confirmed delivered within 5s" in note for note in notes), notes
    assert item["notification_id"] == opened_nid


async def test_counts_stay_exact_under_concurrent_creates_and_reads(
    stack: Stack, tenant: Tenant, inbox_of: Callable[[str], httpx.AsyncClient]
) -> None:
    user = await tenant.user()
    key = await inapp_template(tenant)
    first = [
        await tenant.send("inapp", user["id"], key, {"name": "A", "order": str(n)})
        for n in range(20)
    ]
    inbox = inbox_of(await token_for(tenant, user["id"]))
    page = await landed(inbox, 20)
    ids = [item["id"] for item in page["items"]]
    owner = await tenant_id(stack, tenant)
    engine = make_engine(stack.settings, pool_size=5)

    async def create(n: int) -> None:
        async with engine.begin() as conn:
            await store.create_message(
                conn,
                tenant=owner,
                user_id=user["id"],
                notification_id=uuid.uuid4(),
                title=f"t{n}",
                body="b",
            )

    async def read(message_id: str) -> int:
        # As a client does: an API busy with the burst may answer 503 with Retry-After.
        for _ in range(20):
            answer = await inbox.post(f"/v1/inbox/messages/{message_id}/read")
            if answer.status_code not in (429, 503):
                break
            await asyncio.sleep(float(answer.headers.get("retry-after", "0.5")))
        return answer.status_code

    try:
        outcomes = await asyncio.gather(
            *(create(n) for n in range(100)),
            *(read(message_id) for message_id in ids),
            inbox.post("/v1/inbox/messages/bulk", json={"action": "seen"}),
        )
        # The 100 made here have no notification behind them: marking them seen changes
        # the inbox alone, and is no error.
        assert outcomes[120].status_code == 200, outcomes[120].text
        async with engine.connect() as conn:
            fresh = await store.counts(conn, owner, user["id"])
            logged = await conn.execute(
                text(
                    "SELECT count(*) FILTER (WHERE type = 'message.created'),"
                    " count(DISTINCT message_id) FROM inbox_events"
                    " WHERE tenant = :t AND user_id = :u"
                ),
                {"t": owner, "u": user["id"]},
            )
            created_events, messages = logged.one()
    finally:
        await engine.dispose()
    assert all(status == 200 for status in outcomes[100:120])
    assert fresh["total"] == 120 and fresh["unread"] == 100, fresh
    assert (await feed(inbox))["counts"] == fresh
    assert created_events == 120 and messages == 120
    # Every page once, none twice.
    seen_ids: list[str] = []
    cursor = None
    while True:
        page = await feed(inbox, limit=7, **({"cursor": cursor} if cursor else {}))
        seen_ids += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen_ids) == len(set(seen_ids)) == 120
    assert len(first) == 20


async def test_a_token_reaches_its_own_users_inbox_and_nothing_else(
    stack: Stack,
    tenant: Tenant,
    other_tenant: Tenant,
    inbox_of: Callable[[str], httpx.AsyncClient],
) -> None:
    ada, bob = await tenant.user(), await tenant.user()
    key = await inapp_template(tenant)
    await tenant.send("inapp", ada["id"], key, {"name": "Ada", "order": "1"})
    ada_inbox = inbox_of(await token_for(tenant, ada["id"]))
    [item] = (await landed(ada_inbox, 1))["items"]
    # Same user id in another tenant: another inbox.
    await other_tenant.user(id=ada["id"])
    for token in (
        await token_for(tenant, bob["id"]),
        await token_for(other_tenant, ada["id"]),
    ):
        stranger = inbox_of(token)
        page = await feed(stranger)
        assert page["items"] == [] and page["counts"] == {"unseen": 0, "unread": 0, "total": 0}
        for action in ("seen", "read", "unread", "archive", "unarchive"):
            answer = await stranger.post(f"/v1/inbox/messages/{item['id']}/{action}")
            assert answer.status_code == 404, answer.text
        bulk = await stranger.post(
            "/v1/inbox/messages/bulk", json={"action": "read", "ids": [item["id"]]}
        )
        assert bulk.json()["changed"] == 0
    assert (await feed(ada_inbox))["items"][0]["read_at"] is None

    # An API key is not a user token, and a user token is not an API key.
    api_key = tenant.client.headers["Authorization"].removeprefix("Bearer ")
    assert (await inbox_of(api_key).get("/v1/inbox/messages")).status_code == 401
    token = await token_for(tenant, ada["id"])
    as_key = inbox_of(token)
    for path in ("/v1/notifications", f"/v1/users/{ada['id']}", "/v1/templates"):
        refused = await as_key.get(path)
        assert refused.status_code == 401, path
        assert "user token is for the /v1/inbox routes only" in refused.text
    assert (await as_key.post("/v1/inbox/tokens", json={"user_id": ada["id"]})).status_code == 401
    async with httpx.AsyncClient(base_url=stack.api_url) as anonymous:
        assert (await anonymous.get("/v1/inbox/messages")).status_code == 401
        by_query = await anonymous.get("/v1/inbox/messages", params={"token": token})
        assert by_query.status_code == 200

    # Expired, forged, and revoked by rotating the tenant's secret.
    owner = await tenant_id(stack, tenant)
    engine = make_engine(stack.settings, pool_size=1)
    try:
        async with engine.begin() as conn:
            secret = await tokens.tenant_secret(conn, owner)
        user = tokens.InboxUser(tenant=owner, user_id=ada["id"])
        expired, _ = tokens.sign(secret, user, 60, now=datetime.now(UTC) - timedelta(hours=1))
        forged, _ = tokens.sign("x" * 43, user, 600)
        other = tokens.InboxUser(tenant=await tenant_id(stack, other_tenant), user_id=ada["id"])
        wrong_tenant, _ = tokens.sign(secret, other, 600)  # this tenant's secret, another's id
        for bad in (expired, forged, wrong_tenant, token + "x", token[:-3]):
            answer = await inbox_of(bad).get("/v1/inbox/messages")
            assert answer.status_code == 401, bad
        assert "expired" in (await inbox_of(expired).get("/v1/inbox/messages")).text
        async with engine.begin() as conn:
            await tokens.rotate_secret(conn, owner)
    finally:
        await engine.dispose()
    assert (await as_key.get("/v1/inbox/messages")).status_code == 401
    fresh = inbox_of(await token_for(tenant, ada["id"]))
    assert len((await feed(fresh))["items"]) == 1


async def test_hostile_input_is_refused_by_name(
    stack: Stack, tenant: Tenant, inbox_of: Callable[[str], httpx.AsyncClient]
) -> None:
    user = await tenant.user()
    post = tenant.client.post
    assert (await post("/v1/inbox/tokens", json={"user_id": "nobody-here"})).status_code == 404
    for body, field in (
        ({"user_id": user["id"], "ttl_seconds": 0}, "ttl_seconds"),
        ({"user_id": user["id"], "ttl_seconds": 10**20}, "ttl_seconds"),
        ({"user_id": user["id"], "ttl_seconds": "soon"}, "ttl_seconds"),
        ({"user_id": "a\x00b"}, "user_id"),
        ({"user_id": "u" * 1000}, "user_id"),
        ({}, "user_id"),
    ):
        answer = await post("/v1/inbox/tokens", json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["detail"][0]["loc"][-1] == field
    too_big = await post("/v1/inbox/tokens", json={"user_id": "u" * 100_000})
    assert too_big.status_code == 413
    inbox = inbox_of(await token_for(tenant, user["id"]))
    for path, field in (
        ("/v1/inbox/messages/not-a-uuid/read", "message_id"),
        ("/v1/inbox/messages/%00/read", "message_id"),
        (f"/v1/inbox/messages/{uuid.uuid4()}/delete", "action"),
    ):
        answer = await inbox.post(path)
        assert answer.status_code == 422, (path, answer.text)
        assert answer.json()["detail"][0]["loc"][-1] == field
    assert (await inbox.post(f"/v1/inbox/messages/{uuid.uuid4()}/read")).status_code == 404
    for params, field in (
        ({"filter": "everything"}, "filter"),
        ({"cursor": "\x00"}, "cursor"),
        ({"cursor": "x" * 600}, "cursor"),
        ({"cursor": "bm90IGEgY3Vyc29y"}, "cursor"),
        ({"limit": 0}, "limit"),
        ({"archived": "maybe"}, "archived"),
    ):
        answer = await inbox.get("/v1/inbox/messages", params=params)
        assert answer.status_code == 422, (params, answer.text)
        assert answer.json()["detail"][0]["loc"][-1] == field
    for body in (
        {"action": "destroy"},
        {"action": "read", "ids": ["\x00"]},
        {"action": "read", "ids": [str(uuid.uuid4())] * 1001},
        {"action": "read", "extra": 1},
    ):
        answer = await inbox.post("/v1/inbox/messages/bulk", json=body)
        assert answer.status_code == 422, (body, answer.text)
    huge = inbox_of("h" * 100_000)
    assert (await huge.get("/v1/inbox/messages")).status_code in (401, 431)

    # A key without the send scope may not issue tokens.
    engine = make_engine(stack.settings, pool_size=1)
    try:
        reader = await create_api_key(engine, tenant.name, scopes=frozenset({"read"}))
        tester = await create_api_key(engine, tenant.name, test=True)
    finally:
        await engine.dispose()
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {reader}"}
    ) as read_only:
        refused = await read_only.post("/v1/inbox/tokens", json={"user_id": user["id"]})
        assert refused.status_code == 403

    # A test key's message is in the user's test inbox only; a test key's token shows it.
    key = await inapp_template(tenant)
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {tester}"}, timeout=30
    ) as test_client:
        test_tenant = Tenant(test_client, tenant.name)
        nid = await test_tenant.send("inapp", user["id"], key, {"name": "T", "order": "0"})
        await wait_for_status(test_client, nid, {"sent"}, timeout=30)
        test_inbox = inbox_of(await token_for(test_tenant, user["id"]))
        [item] = (await landed(test_inbox, 1))["items"]
        assert item["notification_id"] == nid
    assert (await feed(inbox))["items"] == []
    assert (await inbox.post(f"/v1/inbox/messages/{item['id']}/read")).status_code == 404


async def test_a_flow_waiting_for_read_goes_on_when_the_message_is_read(
    stack: Stack, tenant: Tenant, inbox_of: Callable[[str], httpx.AsyncClient], sinks: Any
) -> None:
    key = await inapp_template(tenant)
    email = await tenant.template("email", "You read it", "Thanks")
    flow = f"flow-{uuid.uuid4().hex[:8]}"
    steps = [
        {"id": "note", "type": "send", "channel": "inapp", "template": key},
        {"id": "w", "type": "wait", "step": "note", "for": "read", "timeout_seconds": 120},
        {"id": "after", "type": "send", "channel": "email", "template": email},
    ]
    put = await tenant.client.put(f"/v1/flows/{flow}", json={"name": "Read", "steps": steps})
    assert put.status_code == 201, put.text
    user = await tenant.user()
    triggered = await tenant.client.post(
        f"/v1/flows/{flow}/trigger",
        json={"recipients": [user["id"]], "data": {"name": "Ada", "order": "C-3"}},
    )
    assert triggered.status_code == 202, triggered.text
    run_id = triggered.json()["runs"][0]["run_id"]
    inbox = inbox_of(await token_for(tenant, user["id"]))
    [item] = (await landed(inbox, 1))["items"]

    async def run() -> dict[str, Any]:
        return dict((await tenant.client.get(f"/v1/flow-runs/{run_id}")).json())

    await asyncio.sleep(1.5)
    assert (await run())["status"] == "running"
    assert not sinks.state.received("email", to=user["email"])
    started = asyncio.get_running_loop().time()
    assert (await inbox.post(f"/v1/inbox/messages/{item['id']}/read")).status_code == 200

    async def completed() -> bool:
        return bool((await run())["status"] == "completed")

    await eventually(completed, seconds=30)
    waited = asyncio.get_running_loop().time() - started
    steps_done = {step["id"]: step for step in (await run())["steps"]}
    assert (steps_done["w"]["status"], steps_done["w"]["outcome"]) == ("completed", "met")
    assert waited < 20
    await eventually(
        lambda: asyncio.sleep(0, bool(sinks.state.received("email", to=user["email"])))
    )


async def test_preferences_stop_in_app_messages_like_any_channel(
    stack: Stack, tenant: Tenant, inbox_of: Callable[[str], httpx.AsyncClient]
) -> None:
    off = await tenant.user(preferences={"email": True, "sms": True, "push": True, "inapp": False})
    assert off["preferences"]["inapp"] is False
    no_news = await tenant.user(preferences={"categories": {"news": {"inapp": False}}})
    on = await tenant.user()
    assert "inapp" not in on["preferences"]  # shown only when turned off
    key = await inapp_template(tenant)
    created = await tenant.client.post(
        "/v1/templates",
        json={
            "key": "news-" + uuid.uuid4().hex[:6],
            "channel": "inapp",
            "locale": "en",
            "subject": "News",
            "body": "Read all about it",
            "category": "news",
        },
    )
    assert created.status_code == 201, created.text
    news = created.json()["key"]
    data = {"name": "Ada", "order": "D-4"}
    stopped = [
        await tenant.send("inapp", off["id"], key, data),
        await tenant.send("inapp", no_news["id"], news, {}),
    ]
    for nid in stopped:
        final = await wait_for_status(tenant.client, nid, {"suppressed"}, timeout=30)
        assert "opted out" in (final["last_error"] or ""), final
    for user in (off, no_news):
        assert (await feed(inbox_of(await token_for(tenant, user["id"]))))["items"] == []
    # The same user still gets the transactional template's message.
    await tenant.send("inapp", no_news["id"], key, data)
    [item] = (await landed(inbox_of(await token_for(tenant, no_news["id"])), 1))["items"]
    assert item["title"] == "Shipped, Ada"


async def test_quiet_hours_hold_an_in_app_message_without_losing_it(
    stack: Stack, tenant: Tenant, inbox_of: Callable[[str], httpx.AsyncClient]
) -> None:
    now = datetime.now(UTC)
    quiet = {
        "start": (now - timedelta(hours=1)).strftime("%H:%M"),
        "end": (now + timedelta(hours=1)).strftime("%H:%M"),
    }
    user = await tenant.user(timezone="UTC", quiet_hours=quiet)
    key = await inapp_template(tenant)
    nid = await tenant.send("inapp", user["id"], key, {"name": "Ada", "order": "E-5"})
    held = await wait_for_status(tenant.client, nid, {"scheduled"}, timeout=30)
    assert held["status"] == "scheduled"
    notes = [event.get("detail") or "" for event in await events(tenant.client, nid)]
    assert any(note.startswith("quiet hours until") for note in notes), notes
    assert (await feed(inbox_of(await token_for(tenant, user["id"]))))["items"] == []
