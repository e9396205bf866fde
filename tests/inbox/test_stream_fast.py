"""The stream's ordering rule and the origins' parsing, without services: an event is
handed out only when every smaller id is visible (or has stayed missing past the grace),
so a client's last event id is a cursor that skips nothing."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from api.errors import ApiError
from api.main import create_app
from api.routes.inbox_stream import _last_event_id
from herald.inbox.origins import InvalidOrigin, normalize_origin
from herald.inbox.stream import InboxHub
from tests.api.in_process import in_process_settings

pytestmark = pytest.mark.fast

TENANT = uuid.uuid4()


class Log:
    """``inbox_events`` as a listener's connection reads it: only committed rows."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def commit(self, event_id: int, user_id: str = "ada") -> None:
        self.rows.append(
            {
                "id": event_id,
                "tenant": TENANT,
                "user_id": user_id,
                "type": "message.created",
                "message_id": uuid.uuid4(),
            }
        )

    async def fetch(self, _query: str, after: int, limit: int) -> list[dict[str, Any]]:
        return sorted((r for r in self.rows if r["id"] > after), key=lambda r: r["id"])[:limit]


def received(queue: asyncio.Queue[Any]) -> list[int]:
    got = []
    while not queue.empty():
        got.append(queue.get_nowait().id)
    return got


async def test_a_later_id_waits_for_an_earlier_one_still_in_flight() -> None:
    hub = InboxHub("postgresql+asyncpg://x@127.0.0.1/x", hole_grace_seconds=60)
    ada = hub.subscribe(TENANT, "ada")
    log = Log()
    log.commit(1)
    log.commit(3)  # 2 is still in flight
    await hub._advance(log)  # type: ignore[arg-type]
    assert received(ada.queue) == [1]
    log.commit(2)
    await hub._advance(log)  # type: ignore[arg-type]
    assert received(ada.queue) == [2, 3]
    assert hub.horizon == 3


async def test_an_id_that_never_commits_is_skipped_after_the_grace() -> None:
    hub = InboxHub("postgresql+asyncpg://x@127.0.0.1/x", hole_grace_seconds=0.05)
    ada = hub.subscribe(TENANT, "ada")
    log = Log()
    log.commit(2)  # 1 rolled back
    await hub._advance(log)  # type: ignore[arg-type]
    assert received(ada.queue) == []
    await asyncio.sleep(0.1)
    await hub._advance(log)  # type: ignore[arg-type]
    assert received(ada.queue) == [2]


async def test_each_subscriber_gets_its_own_users_events_only() -> None:
    hub = InboxHub("postgresql+asyncpg://x@127.0.0.1/x")
    ada, bob = hub.subscribe(TENANT, "ada"), hub.subscribe(TENANT, "bob")
    stranger = hub.subscribe(uuid.uuid4(), "ada")
    log = Log()
    log.commit(1, "ada")
    log.commit(2, "bob")
    log.commit(3, "ada")
    await hub._advance(log)  # type: ignore[arg-type]
    assert (received(ada.queue), received(bob.queue), received(stranger.queue)) == (
        [1, 3],
        [2],
        [],
    )
    hub.unsubscribe(ada)
    hub.unsubscribe(bob)
    hub.unsubscribe(stranger)
    assert hub.streams == 0


@pytest.mark.parametrize(
    ("given", "origin"),
    [
        ("https://App.Example.com", "https://app.example.com"),
        ("https://app.example.com/", "https://app.example.com"),
        ("https://app.example.com:443", "https://app.example.com"),
        ("http://localhost:3000", "http://localhost:3000"),
    ],
)
def test_origins_are_kept_as_browsers_send_them(given: str, origin: str) -> None:
    assert normalize_origin(given) == origin


@pytest.mark.parametrize(
    "given",
    [
        "app.example.com",
        "ftp://app.example.com",
        "https://app.example.com/path",
        "https://user@app.example.com",
        "https://app.example.com?x=1",
        "https://app.exa\x00mple.com",
        "https://app.example.com:99999",
        "",
    ],
)
def test_what_is_not_an_origin_is_refused(given: str) -> None:
    with pytest.raises(InvalidOrigin):
        normalize_origin(given)


def test_last_event_id_is_digits_named_by_where_it_came() -> None:
    assert _last_event_id(None, None) is None
    assert _last_event_id("42", "7") == 42
    assert _last_event_id(None, "7") == 7
    for bad in ("-1", "1e3", "٣", "9" * 20, "1 "):
        with pytest.raises(ApiError) as raised:
            _last_event_id(bad, None)
        assert raised.value.status_code == 422


async def test_the_component_is_served_as_javascript() -> None:
    app = create_app(in_process_settings())  # no lifespan: this route needs no database
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://herald") as client:
        served = await client.get("/inbox/herald-inbox.js")
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("text/javascript")
    assert 'customElements.define("herald-inbox"' in served.text
