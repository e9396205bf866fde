"""``GET /v1/inbox/stream`` on the real API and PostgreSQL: messages written in the
database reach the user's open stream; a stream resumed with ``Last-Event-ID`` misses
nothing and repeats nothing; concurrent writes all arrive, in id order; a stream shows
its own user only; tokens that are not valid user tokens are refused; CORS follows the
tenant's origins."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from devtools.processes import herald_argv
from herald.db import make_engine
from herald.inbox import store, tokens
from herald.settings import Settings
from herald.tenants import tenant_by_name
from tests.harness import Stack, Tenant
from tests.inbox.sse import Event, EventStream


class Inbox:
    """Writes a tenant's inbox messages straight into PostgreSQL, as the provider step and
    the feed routes do (``herald.inbox.store``)."""

    def __init__(self, stack: Stack, tenant: Tenant, tenant_id: uuid.UUID) -> None:
        self.engine = make_engine(stack.settings, pool_size=5)
        self.tenant = tenant
        self.tenant_id = tenant_id

    async def create(self, user_id: str, title: str = "Hello") -> uuid.UUID:
        async with self.engine.begin() as conn:
            message_id, _ = await store.create_message(
                conn,
                tenant=self.tenant_id,
                user_id=user_id,
                notification_id=uuid.uuid4(),
                title=title,
                body=f"body of {title}",
            )
        return message_id

    async def read(self, user_id: str, message_id: uuid.UUID) -> None:
        async with self.engine.begin() as conn:
            await store.apply(
                conn, tenant=self.tenant_id, user_id=user_id, action="read", ids=[message_id]
            )

    async def counts(self, user_id: str) -> dict[str, int]:
        async with self.engine.connect() as conn:
            return await store.counts(conn, self.tenant_id, user_id)

    async def token(self, user_id: str) -> str:
        """A token for ``user_id``, made a user of the tenant first if it is not yet."""
        made = await self.tenant.client.post("/v1/users", json={"id": user_id})
        assert made.status_code in (201, 409), made.text
        answer = await self.tenant.client.post("/v1/inbox/tokens", json={"user_id": user_id})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["token"])


@pytest.fixture
async def inbox(stack: Stack, tenant: Tenant) -> AsyncIterator[Inbox]:
    lookup = make_engine(stack.settings, pool_size=1)
    found = await tenant_by_name(lookup, tenant.name)
    await lookup.dispose()
    assert found is not None
    made = Inbox(stack, tenant, found.id)
    yield made
    await made.engine.dispose()


@pytest.fixture
async def browser_client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """A client with no credentials of its own: the token goes in the query, as
    ``EventSource`` sends it."""
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as client:
        yield client


def created(events: list[Event]) -> list[str]:
    return [event.data["id"] for event in events if event.type == "message.created"]


def ids(events: list[Event]) -> list[int]:
    return [int(event.id) for event in events if event.type.startswith("message.")]


async def test_a_stream_resumed_with_last_event_id_misses_nothing_and_repeats_nothing(
    inbox: Inbox, browser_client: httpx.AsyncClient
) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    token = await inbox.token(user)
    async with EventStream(browser_client, token) as stream:
        hello = await stream.next()
        assert hello.type == "counts" and hello.data == {"unseen": 0, "unread": 0, "total": 0}
        first = [await inbox.create(user, f"first {n}") for n in range(3)]
        got = await stream.until("message.created", 3)
        assert created(got) == [str(m) for m in first]
        last_id = str(ids(got)[-1])

    # Disconnected: more messages, and a change to one the client already has.
    missed = [await inbox.create(user, f"missed {n}") for n in range(4)]
    await inbox.read(user, first[0])

    async with EventStream(browser_client, token, last_event_id=last_id) as stream:
        got = await stream.until("message.created", 4)
        got += await stream.until("message.updated", 1)
        assert created(got) == [str(m) for m in missed]
        [updated] = [e.data for e in got if e.type == "message.updated"]
        assert updated["id"] == str(first[0]) and updated["read_at"]
        assert ids(got) == sorted(set(ids(got))) and min(ids(got)) > int(last_id)
        # ... then live, with nothing replayed twice at the seam.
        live = await inbox.create(user, "live")
        after = await stream.until("message.created", 1)
        assert created(after) == [str(live)]
        assert min(ids(after)) > max(ids(got))
        # The counts follow the message they changed.
        tail = after[[e.type for e in after].index("message.created") + 1 :]
        counts = [e for e in tail if e.type == "counts"] or [await stream.next()]
        assert counts[-1].data == {"unseen": 7, "unread": 7, "total": 8}
        last_id = after[-1].id

    # The query parameter serves where the header cannot be set; nothing new: nothing sent.
    async with browser_client.stream(
        "GET", "/v1/inbox/stream", params={"token": token, "last_event_id": last_id}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        head = [await asyncio.wait_for(anext(lines), 5) for _ in range(2)]
        assert head[0] == f"id: {last_id}" and head[1] == "event: counts"


async def test_a_hundred_concurrent_messages_all_arrive_in_order(
    inbox: Inbox, browser_client: httpx.AsyncClient
) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    async with EventStream(browser_client, await inbox.token(user)) as stream:
        await stream.next()
        made = await asyncio.gather(*(inbox.create(user, f"m{n}") for n in range(100)))
        got = await stream.until("message.created", 100, timeout=30)
        assert sorted(created(got)) == sorted(str(m) for m in made)
        assert ids(got) == sorted(set(ids(got)))
        # Twenty reads at once: the last counts the stream sends equal the table's.
        await asyncio.gather(*(inbox.read(user, m) for m in made[:20]))
        got += await stream.until("message.updated", 20, timeout=30)
        got += await stream.quiet(0.5)
        last_counts = [e.data for e in got if e.type == "counts"][-1]
        assert (
            last_counts
            == await inbox.counts(user)
            == {
                "unseen": 80,
                "unread": 80,
                "total": 100,
            }
        )


async def test_a_stream_shows_its_own_users_messages_only(
    inbox: Inbox, other_tenant: Tenant, stack: Stack, browser_client: httpx.AsyncClient
) -> None:
    ada, bob = f"ada-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"
    lookup = make_engine(stack.settings, pool_size=1)
    other = await tenant_by_name(lookup, other_tenant.name)
    await lookup.dispose()
    assert other is not None
    # The same user id in another tenant is another person.
    namesake = Inbox(stack, other_tenant, other.id)
    try:
        async with (
            EventStream(browser_client, await inbox.token(ada)) as ada_stream,
            EventStream(browser_client, await inbox.token(bob)) as bob_stream,
            EventStream(browser_client, await namesake.token(ada)) as namesake_stream,
        ):
            for stream in (ada_stream, bob_stream, namesake_stream):
                await stream.next()
            mine = [await inbox.create(ada, f"for ada {n}") for n in range(3)]
            assert created(await ada_stream.until("message.created", 3)) == [str(m) for m in mine]
            assert await bob_stream.quiet(1.0) == []
            assert await namesake_stream.quiet(0.2) == []
    finally:
        await namesake.engine.dispose()


async def test_anything_but_a_valid_user_token_is_refused(
    inbox: Inbox, tenant: Tenant, browser_client: httpx.AsyncClient
) -> None:
    async def status(token: str | None, **headers: str) -> tuple[int, str]:
        params = {} if token is None else {"token": token}
        answer = await browser_client.get("/v1/inbox/stream", params=params, headers=headers)
        return answer.status_code, answer.text

    async with inbox.engine.begin() as conn:
        secret = await tokens.tenant_secret(conn, inbox.tenant_id)
    user = tokens.InboxUser(inbox.tenant_id, "ada")
    expired, _ = tokens.sign(secret, user, 60, now=datetime.now(UTC) - timedelta(hours=1))
    forged, _ = tokens.sign("not the secret of this tenant, forged", user, 600)
    api_key = tenant.client.headers["authorization"].removeprefix("Bearer ")

    assert (await status(expired))[0] == 401
    assert "expired" in (await status(expired))[1]
    assert (await status(forged))[0] == 401
    assert (await status(api_key))[0] == 401
    assert (await status(None, Authorization=f"Bearer {api_key}"))[0] == 401
    assert (await status(None))[0] == 401
    assert (await status("x" * 60_000))[0] in (401, 414, 431)
    assert (await status("a\x00b"))[0] == 401
    good = await inbox.token("ada")
    code, body = await status(good, **{"Last-Event-ID": "12; DROP TABLE"})
    assert code == 422 and "Last-Event-ID" in body
    code, body = await status(good, **{"Last-Event-ID": "9" * 40})
    assert code == 422 and "Last-Event-ID" in body


def herald(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        herald_argv(*args),
        env={**os.environ, **settings.as_env(), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_cors_follows_the_origins_the_cli_sets(
    inbox: Inbox, stack: Stack, browser_client: httpx.AsyncClient
) -> None:
    app_origin = f"https://{uuid.uuid4().hex[:8]}.example.com"
    name = inbox.tenant.name
    shown = await asyncio.to_thread(herald, stack.settings, "tenant", "origins", name)
    assert shown.returncode == 0 and "no browser origins" in shown.stdout, shown.stderr
    bad = await asyncio.to_thread(
        herald, stack.settings, "tenant", "origins", name, "https://x.example/path"
    )
    assert bad.returncode == 2 and "not an origin" in bad.stderr
    unknown = await asyncio.to_thread(
        herald, stack.settings, "tenant", "origins", "no-such-tenant", app_origin
    )
    assert unknown.returncode == 1 and "no tenant" in unknown.stderr
    made = await asyncio.to_thread(
        herald, stack.settings, "tenant", "origins", name, app_origin.upper() + "/"
    )
    assert made.returncode == 0 and made.stdout.split() == [app_origin], made.stderr
    token = await inbox.token("ada")
    await asyncio.sleep(5.5)  # the API re-reads origins every 5 s

    preflight = await browser_client.options(
        "/v1/inbox/messages",
        headers={
            "Origin": app_origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.headers["access-control-allow-origin"] == app_origin
    assert "Authorization" in preflight.headers["access-control-allow-headers"]
    stranger = await browser_client.options(
        "/v1/inbox/messages",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in stranger.headers

    async with EventStream(browser_client, token, headers={"Origin": app_origin}) as stream:
        assert stream.response is not None
        assert stream.response.headers["access-control-allow-origin"] == app_origin
    async with EventStream(
        browser_client, token, headers={"Origin": "https://evil.example"}
    ) as stream:
        assert stream.response is not None
        assert "access-control-allow-origin" not in stream.response.headers
    listed = await browser_client.get(
        "/v1/inbox/messages", headers={"Origin": app_origin, "Authorization": f"Bearer {token}"}
    )
    assert listed.headers["access-control-allow-origin"] == app_origin


async def test_a_stream_ends_when_its_token_expires(
    inbox: Inbox, browser_client: httpx.AsyncClient
) -> None:
    async with inbox.engine.begin() as conn:
        secret = await tokens.tenant_secret(conn, inbox.tenant_id)
    token, _ = tokens.sign(secret, tokens.InboxUser(inbox.tenant_id, "ada"), 2)
    async with browser_client.stream(
        "GET", "/v1/inbox/stream", params={"token": token}
    ) as response:
        assert response.status_code == 200
        # The body ends by itself (the client reconnects, gets 401 and asks for a new token).
        await asyncio.wait_for(response.aread(), 10)
    assert (
        await browser_client.get("/v1/inbox/stream", params={"token": token})
    ).status_code == 401


async def test_the_demo_page_embeds_the_component_with_a_token_for_its_user(
    browser_client: httpx.AsyncClient,
) -> None:
    page = await browser_client.get("/inbox/demo", params={"user": "grace"})
    assert page.status_code == 200
    assert '<script src="/inbox/herald-inbox.js"' in page.text
    token = page.text.split('token="', 1)[1].split('"', 1)[0]
    async with EventStream(browser_client, token) as stream:
        assert (await stream.next()).type == "counts"
    for hostile in ('"><script>alert(1)</script>', "a\x00b", "x" * 201, ""):
        refused = await browser_client.get("/inbox/demo", params={"user": hostile})
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"][0]["loc"][-1] == "user"
