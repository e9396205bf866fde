"""Status webhooks on the real stack: a local receiver verifies every request with
standardwebhooks, endpoints fail, answer 410 or never answer, and the dispatcher is
killed mid-burst."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from herald.ports import free_port
from herald.webhooks import new_secret
from tests.harness import Stack, Tenant, events, wait_for_status

ENDED = {"sent", "delivered", "undelivered", "failed", "cancelled", "suppressed"}


@dataclass
class Delivery:
    """One request the receiver got."""

    headers: dict[str, str]
    body: bytes
    answered: int = 0

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    """A local webhook endpoint: answers ``answers`` one per request, then ``status``;
    ``delay`` seconds before each answer. With ``hold_first`` the first request gets no
    answer until ``release`` (30 s at most)."""

    answers: list[int] = field(default_factory=list)
    status: int = 200
    delay: float = 0.0
    hold_first: bool = False
    release: threading.Event = field(default_factory=threading.Event)
    requests: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def answer(self, delivery: Delivery) -> int:
        with self.lock:
            delivery.answered = self.answers.pop(0) if self.answers else self.status
            self.requests.append(delivery)
            return delivery.answered

    def received(self) -> list[Delivery]:
        """Every request so far, whatever it was answered."""
        with self.lock:
            return list(self.requests)

    def accepted(self) -> list[Delivery]:
        """Requests answered 2xx (the ones a receiver would have processed)."""
        return [d for d in self.received() if 200 <= d.answered < 300]

    def ids(self) -> set[str]:
        """The webhook ids of the events accepted."""
        return {delivery.webhook_id for delivery in self.accepted()}


def _serve(receiver: Receiver) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            delivery = Delivery({k.lower(): v for k, v in self.headers.items()}, body)
            status = receiver.answer(delivery)
            if receiver.hold_first and receiver.received()[0] is delivery:
                receiver.release.wait(30.0)
            if receiver.delay:
                time.sleep(receiver.delay)
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    server = ThreadingHTTPServer(("127.0.0.1", receiver.port), Handler)
    server.receiver = receiver  # type: ignore[attr-defined]
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


@pytest.fixture
async def receivers() -> AsyncIterator[Callable[..., Receiver]]:
    """Start local webhook receivers; all stopped after the test."""
    servers: list[ThreadingHTTPServer] = []

    def start(**options: Any) -> Receiver:
        receiver = Receiver(**options)
        servers.append(_serve(receiver))
        return receiver

    yield start
    for server in servers:
        server.receiver.release.set()  # type: ignore[attr-defined]
        server.shutdown()
        server.server_close()


async def _subscribe(tenant: Tenant, receiver: Receiver, events: list[str] | None = None) -> dict:
    response = await tenant.client.post(
        "/v1/webhooks", json={"url": receiver.url, "events": events or ["*"]}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _push(tenant: Tenant) -> str:
    user = await tenant.user()
    await tenant.device(user["id"])
    template = await tenant.template("push", "You have mail", subject="Herald")
    nid = await tenant.send("push", user["id"], template)
    await wait_for_status(tenant.client, nid, ENDED)
    return nid


async def _emails(tenant: Tenant, count: int) -> list[str]:
    user = await tenant.user()
    template = await tenant.template("email", "<p>Hello {{ n }}</p>", "Hello {{ n }}")
    return [await tenant.send("email", user["id"], template, {"n": n}) for n in range(count)]


async def _until(check: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_each_event_arrives_signed_with_the_endpoints_secret(
    tenant: Tenant, receivers: Callable[..., Receiver]
) -> None:
    receiver = receivers()
    endpoint = await _subscribe(tenant, receiver)
    nid = await _push(tenant)
    await tenant.client.post(f"/v1/notifications/{nid}/receipt", json={"status": "delivered"})

    wanted = ["accepted", "sending", "sent", "delivered"]
    await _until(lambda: len(receiver.accepted()) >= len(wanted), what="four webhooks")

    verifier = Webhook(endpoint["secret"])
    bodies = [verifier.verify(d.body, d.headers) for d in receiver.accepted()]
    assert sorted(body["type"] for body in bodies) == sorted(f"notification.{s}" for s in wanted)
    for delivery, body in zip(receiver.accepted(), bodies, strict=True):
        assert body["id"] == delivery.webhook_id
        assert body["notification_id"] == nid
        assert body["channel"] == "push"
        assert set(body) == {
            "type",
            "id",
            "notification_id",
            "status",
            "channel",
            "attempt",
            "at",
            "detail",
        }
    # The secret is shown once: never in the list.
    listed = (await tenant.client.get("/v1/webhooks")).json()
    assert [item["id"] for item in listed] == [endpoint["id"]]
    assert "secret" not in listed[0]
    first = receiver.accepted()[0]
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(first.body, first.headers)


async def test_an_endpoint_gets_only_the_statuses_it_asked_for(
    tenant: Tenant, receivers: Callable[..., Receiver]
) -> None:
    receiver = receivers()
    await _subscribe(tenant, receiver, ["sent"])
    nid = await _push(tenant)

    await _until(lambda: len(receiver.accepted()) >= 1, what="the sent webhook")
    await asyncio.sleep(1.0)  # room for anything it should not get

    assert [d.json()["type"] for d in receiver.accepted()] == ["notification.sent"]
    assert receiver.accepted()[0].json()["notification_id"] == nid


async def test_failed_deliveries_are_retried_with_the_same_webhook_id(
    tenant: Tenant, receivers: Callable[..., Receiver]
) -> None:
    receiver = receivers(answers=[500, 503], status=200)
    endpoint = await _subscribe(tenant, receiver, ["accepted"])
    nid = (await _emails(tenant, 1))[0]

    await _until(lambda: len(receiver.accepted()) >= 1, what="two retries, then success")

    assert [d.answered for d in receiver.received()] == [500, 503, 200]
    assert len({d.webhook_id for d in receiver.received()}) == 1
    assert receiver.received()[0].json()["notification_id"] == nid
    await asyncio.sleep(1.0)
    assert len(receiver.received()) == 3  # the 200 ended it
    deliveries = (await tenant.client.get(f"/v1/webhooks/{endpoint['id']}/deliveries")).json()
    assert [(d["attempt"], d["status_code"]) for d in deliveries] == [(3, 200), (2, 503), (1, 500)]
    assert {d["event_id"] for d in deliveries} == {receiver.received()[0].webhook_id}


async def test_an_endpoint_down_for_a_while_gets_every_event_once_it_is_back(
    tenant: Tenant, receivers: Callable[..., Receiver]
) -> None:
    receiver = receivers(status=502)
    await _subscribe(tenant, receiver)
    ids = await _emails(tenant, 5)
    for nid in ids:
        await wait_for_status(tenant.client, nid, ENDED)
    expected = sum([len(await events(tenant.client, nid)) for nid in ids])
    await _until(
        lambda: len({d.webhook_id for d in receiver.received()}) >= expected,
        what="a first attempt of every event",
    )
    await asyncio.sleep(8)  # down for a while: every event is retried meanwhile
    tried_while_down = {d.webhook_id for d in receiver.received()}

    receiver.status = 200

    await _until(lambda: len(receiver.ids()) >= expected, what="every event, once back")
    # The events that arrive are the ones tried before, under the same ids.
    assert receiver.ids() == tried_while_down
    assert len(tried_while_down) == expected


async def test_410_disables_the_endpoint(
    tenant: Tenant, receivers: Callable[..., Receiver]
) -> None:
    receiver = receivers(status=410)
    endpoint = await _subscribe(tenant, receiver)
    await _emails(tenant, 1)

    await _until(lambda: len(receiver.received()) >= 1, what="the first webhook")
    listed: list[dict[str, Any]] = []

    async def disabled() -> bool:
        nonlocal listed
        listed = (await tenant.client.get("/v1/webhooks")).json()
        return listed[0]["disabled_at"] is not None

    for _ in range(50):
        if await disabled():
            break
        await asyncio.sleep(0.1)
    assert "410" in listed[0]["disabled_reason"]
    one = (await tenant.client.get(f"/v1/webhooks/{endpoint['id']}")).json()
    assert one == listed[0]
    await asyncio.sleep(1.0)  # requests already in flight when it answered 410 end
    before = len(receiver.received())
    await _emails(tenant, 2)
    await asyncio.sleep(2.0)

    assert len(receiver.received()) == before  # nothing more is sent to it
    deliveries = (await tenant.client.get(f"/v1/webhooks/{endpoint['id']}/deliveries")).json()
    assert {d["status_code"] for d in deliveries} == {410}
    assert len(deliveries) == before


async def test_an_endpoint_that_never_answers_delays_no_notification_and_no_other_endpoint(
    tenant: Tenant, other_tenant: Tenant, receivers: Callable[..., Receiver]
) -> None:
    stuck = receivers(delay=30.0)
    healthy = receivers()
    await _subscribe(tenant, stuck)
    await _subscribe(other_tenant, healthy)

    mine = await _emails(tenant, 10)
    theirs = await _emails(other_tenant, 3)
    for nid in mine:
        await wait_for_status(tenant.client, nid, ENDED)
    for nid in theirs:
        await wait_for_status(other_tenant.client, nid, ENDED)
    expected = sum([len(await events(other_tenant.client, nid)) for nid in theirs])

    await _until(lambda: len(healthy.ids()) >= expected, timeout=20, what="the healthy endpoint")
    # Meanwhile the stuck endpoint has not answered one request.
    assert len(stuck.received()) >= 1


async def test_an_answer_that_takes_long_holds_up_none_of_the_endpoints_other_events(
    tenant: Tenant, receivers: Callable[..., Receiver]
) -> None:
    """Each endpoint keeps its pipeline full: while one request waits for its answer, the
    endpoint's other events go out on the other slots (not after it, or after its 10 s
    timeout)."""
    receiver = receivers(hold_first=True)
    endpoint = await _subscribe(tenant, receiver)
    ids = await _emails(tenant, 5)
    for nid in ids:
        await wait_for_status(tenant.client, nid, ENDED)
    expected = sum([len(await events(tenant.client, nid)) for nid in ids])

    await _until(lambda: len(receiver.ids()) >= expected - 1, what="the other events")
    # Each attempt is recorded once its answer is in, a moment after the receiver has it.
    deadline = time.monotonic() + 30
    while True:
        deliveries = (await tenant.client.get(f"/v1/webhooks/{endpoint['id']}/deliveries")).json()
        if len(deliveries) >= expected - 1 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    receiver.release.set()

    # All in while the first was still unanswered: no attempt had timed out or failed.
    assert [d["error"] for d in deliveries if d["error"] or d["status_code"] != 200] == []
    assert len(deliveries) == expected - 1
    await _until(lambda: len(receiver.ids()) == expected, what="the held event")


async def test_a_url_to_a_private_address_needs_the_setting(tenant: Tenant) -> None:
    """The test stack allows private URLs; without the setting they are refused (see
    tests/herald/test_webhook_urls.py). A URL that is not http(s) never is allowed."""
    for url in ("ftp://127.0.0.1/hooks", "file:///etc/passwd", "http://user:pw@127.0.0.1/"):
        response = await tenant.client.post("/v1/webhooks", json={"url": url})
        assert response.status_code == 422, url
        assert response.json()["detail"][0]["loc"] == ["body", "url"]
    unknown = await tenant.client.post(
        "/v1/webhooks", json={"url": "http://127.0.0.1/", "events": ["opened"]}
    )
    assert unknown.status_code == 422


async def test_webhooks_belong_to_their_tenant(
    tenant: Tenant, other_tenant: Tenant, receivers: Callable[..., Receiver]
) -> None:
    endpoint = await _subscribe(tenant, receivers())

    assert (await other_tenant.client.get("/v1/webhooks")).json() == []
    foreign = await other_tenant.client.delete(f"/v1/webhooks/{endpoint['id']}")
    foreign_log = await other_tenant.client.get(f"/v1/webhooks/{endpoint['id']}/deliveries")
    foreign_one = await other_tenant.client.get(f"/v1/webhooks/{endpoint['id']}")
    mine = await tenant.client.get(f"/v1/webhooks/{endpoint['id']}")
    removed = await tenant.client.delete(f"/v1/webhooks/{endpoint['id']}")
    again = await tenant.client.delete(f"/v1/webhooks/{endpoint['id']}")
    gone = await tenant.client.get(f"/v1/webhooks/{endpoint['id']}")

    assert (foreign.status_code, foreign_log.status_code, foreign_one.status_code) == (404,) * 3
    assert mine.status_code == 200 and mine.json()["url"] == endpoint["url"]
    assert "secret" not in mine.json()
    assert (removed.status_code, again.status_code, gone.status_code) == (204, 404, 404)
    assert (await tenant.client.get("/v1/webhooks")).json() == []


async def test_a_killed_dispatcher_loses_no_event(
    tenant: Tenant, stack: Stack, receivers: Callable[..., Receiver]
) -> None:
    receiver = receivers(delay=0.2)
    await _subscribe(tenant, receiver)
    ids = await _emails(tenant, 15)
    await _until(lambda: len(receiver.received()) >= 3, what="the burst to start")

    stack.processes["webhooks"].kill()  # SIGKILL, with deliveries in flight
    received_before = len(receiver.ids())
    stack.processes["webhooks"].start()

    for nid in ids:
        await wait_for_status(tenant.client, nid, ENDED)
    expected = sum([len(await events(tenant.client, nid)) for nid in ids])
    assert received_before < expected
    await _until(lambda: len(receiver.ids()) >= expected, timeout=90, what="every event")
    assert len(receiver.ids()) == expected
