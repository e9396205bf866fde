"""Bad and hostile input gets a clear refusal, never a 500, a stall or a fetched URL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from devtools.sinks import Sinks
from herald.ports import free_port
from tests.harness import Tenant, wait_for_status


@pytest.fixture
def url_trap() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server on this machine that records every request it gets."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        do_POST = do_HEAD = do_GET

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


def _field(response_json: dict[str, object]) -> list[object]:
    detail = response_json["detail"]
    assert isinstance(detail, list)
    return [entry["loc"][-1] for entry in detail]  # type: ignore[index]


@pytest.mark.parametrize(
    "body",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{% for i in range(100000000) %}x{% endfor %}",
        "{{ 'a' * 100000000 }}",
        "{{ '{:>100000000}'.format(1) }}",
    ],
)
async def test_template_escapes_and_bombs_are_refused_at_save(tenant: Tenant, body: str) -> None:
    response = await tenant.client.post(
        "/v1/templates", json={"key": "evil", "channel": "sms", "body": body}
    )
    assert response.status_code == 422, response.text
    assert _field(response.json()) == ["body"]
    assert "refused" in response.text


async def test_a_bomb_that_needs_the_data_fails_the_notification_quickly(tenant: Tenant) -> None:
    user = await tenant.user()
    key = await tenant.template(
        "sms", "{% for a in xs %}{% for b in xs %}{{ a }}{% endfor %}{% endfor %}", None
    )
    nid = await tenant.send("sms", user["id"], key, {"xs": list(range(3000))})
    final = await wait_for_status(tenant.client, nid, timeout=60)
    assert final["status"] == "failed"
    assert "refused unsafe template operation" in final["last_error"]


async def test_size_limits(tenant: Tenant) -> None:
    too_long = await tenant.client.post(
        "/v1/templates", json={"key": "big", "channel": "sms", "body": "x" * 40_000}
    )
    assert too_long.status_code == 422 and _field(too_long.json()) == ["body"]
    too_big = await tenant.client.post(
        "/v1/notifications",
        json={"channel": "sms", "user_id": "u", "template": "t", "data": {"x": "y" * 70_000}},
    )
    assert too_big.status_code == 413
    assert "larger than" in too_big.json()["detail"]


async def test_line_breaks_in_email_headers_are_refused(tenant: Tenant, sinks: Sinks) -> None:
    in_template = await tenant.client.post(
        "/v1/templates",
        json={"key": "crlf", "channel": "email", "subject": "Hi\r\nBcc: x@evil.test", "body": "b"},
    )
    assert in_template.status_code == 422 and _field(in_template.json()) == ["subject"]

    user = await tenant.user()
    key = await tenant.template("email", "<p>Hi</p>", "Hello {{ name }}")
    nid = await tenant.send("email", user["id"], key, {"name": "Ada\r\nBcc: victim@evil.test"})
    final = await wait_for_status(tenant.client, nid, timeout=30)
    assert (final["status"], final["attempts"]) == ("failed", 1)
    assert "line break" in final["last_error"]
    assert sinks.state.received("email", to=user["email"]) == []

    bad_user = await tenant.client.post(
        "/v1/users", json={"id": "crlf-user", "email": "a@example.com\r\nBcc: b@evil.test"}
    )
    assert bad_user.status_code == 422 and _field(bad_user.json()) == ["email"]


@pytest.mark.parametrize(
    "phone",
    ["07700900123", "+0123456789", "+12", "+1 555 0100 123", "+1555010012345678", "+1555\n0100"],
)
async def test_phone_numbers_must_be_e164(tenant: Tenant, phone: str) -> None:
    response = await tenant.client.post("/v1/users", json={"id": "p", "phone": phone})
    assert response.status_code == 422, response.text
    assert _field(response.json()) == ["phone"]


async def test_urls_in_payloads_are_never_fetched(
    tenant: Tenant, sinks: Sinks, url_trap: tuple[str, list[str]]
) -> None:
    trap, hits = url_trap
    user = await tenant.user(locale="en")
    token = await tenant.device(user["id"], token=f"{trap}/device-token")
    data = {"image": f"{trap}/image.png", "link": f"{trap}/track", "avatar_url": f"{trap}/a"}
    ids = []
    for channel, body in (
        ("email", '<p><img src="{{ image }}"> <a href="{{ link }}">x</a></p>'),
        ("sms", "See {{ link }}"),
        ("push", "{{ image }}"),
    ):
        key = await tenant.template(channel, body, "Look" if channel != "sms" else None)
        ids.append(await tenant.send(channel, user["id"], key, data))
    for nid in ids:
        assert (await wait_for_status(tenant.client, nid, timeout=30))["status"] == "sent"
    (push,) = sinks.state.received("push", to=token)
    assert push.body == f"{trap}/image.png"
    assert hits == []
