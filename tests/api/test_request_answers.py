"""What a caller sees when a request goes wrong in a small way, checked against the real
app in this process with no services: a form where JSON was meant, a key sent without
``Bearer ``, a request that raises (its log lines all carry its request id), and the
favicon."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from api.deps import TenantDep
from api.errors import SEND_JSON
from api.main import create_app
from herald.logs import HeraldJsonFormatter
from tests.api.in_process import in_process_settings

pytestmark = pytest.mark.fast

log = logging.getLogger("tests.request_answers")


class _Thing(BaseModel):
    name: str


def _app() -> FastAPI:
    """The real app (routes, middleware, error handlers; no lifespan, so no services),
    with routes of its own that need nothing behind them (up to the key lookup)."""
    app = create_app(in_process_settings())

    async def logs() -> dict[str, str]:
        log.info("working on it")
        return {"ok": "yes"}

    async def boom() -> None:
        log.info("about to fail")
        raise RuntimeError("the handler broke")

    async def thing(body: _Thing) -> dict[str, str]:
        return {"name": body.name}

    async def mine(tenant: TenantDep) -> dict[str, str]:
        return {"tenant": tenant.name}

    app.add_api_route("/test-only/logs", logs, methods=["GET"])
    app.add_api_route("/test-only/boom", boom, methods=["GET"])
    app.add_api_route("/test-only/thing", thing, methods=["POST"])
    app.add_api_route("/test-only/mine", mine, methods=["GET"])
    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://herald.test") as made:
        yield made


class _Lines(logging.Handler):
    """Every line logged while installed, as the JSON the real formatter writes."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(HeraldJsonFormatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("httpx"):  # the test's client, not the app
            self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def lines() -> Iterator[list[dict[str, Any]]]:
    handler = _Lines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler.lines
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_every_line_of_a_request_carries_its_request_id(
    client: httpx.AsyncClient, lines: list[dict[str, Any]]
) -> None:
    answer = await client.get("/test-only/logs", headers={"X-Request-ID": "req-logs-1"})
    assert answer.status_code == 200
    mine = [line for line in lines if line["name"] in ("tests.request_answers", "api.access")]
    assert [line["message"] for line in mine] == ["working on it", "request"]
    assert all(line.get("request_id") == "req-logs-1" for line in mine), mine


async def test_a_500_is_logged_with_its_request_id_and_answers_with_it(
    client: httpx.AsyncClient, lines: list[dict[str, Any]]
) -> None:
    answer = await client.get("/test-only/boom", headers={"X-Request-ID": "req-boom-1"})
    assert answer.status_code == 500
    assert answer.json() == {
        "detail": "internal error; it has been logged",
        "request_id": "req-boom-1",
    }
    assert answer.headers["x-request-id"] == "req-boom-1"

    assert lines, "nothing was logged"
    assert all(line.get("request_id") == "req-boom-1" for line in lines), lines
    (failure,) = [line for line in lines if line["message"] == "unexpected error"]
    assert "the handler broke" in failure["exc_info"]
    (access,) = [line for line in lines if line["name"] == "api.access"]
    assert access["status"] == 500 and access["route"] == "/test-only/boom"


async def test_a_request_after_a_500_carries_only_its_own_id(
    client: httpx.AsyncClient, lines: list[dict[str, Any]]
) -> None:
    await client.get("/test-only/boom", headers={"X-Request-ID": "req-first"})
    lines.clear()
    await client.get("/test-only/logs", headers={"X-Request-ID": "req-second"})
    assert {line.get("request_id") for line in lines} == {"req-second"}


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded", '{"name": "ada"}'),  # curl -d without -H
        ("text/plain", '{"name": "ada"}'),
        ("multipart/form-data; boundary=x", "--x--"),
        (None, '{"name": "ada"}'),  # FastAPI reads JSON only when told it is JSON
    ],
)
async def test_a_json_route_sent_a_form_says_which_content_type_to_send(
    client: httpx.AsyncClient, content_type: str | None, body: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    answer = await client.post("/test-only/thing", content=body, headers=headers)
    assert answer.status_code == 415, answer.text
    assert answer.json()["detail"] == SEND_JSON
    assert "Content-Type: application/json" in SEND_JSON


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("application/json", '{"name": "ada"}', 200),
        ("application/json; charset=utf-8", '{"name": "ada"}', 200),
        ("application/merge-patch+json", '{"name": "ada"}', 200),
        ("application/json", "", 422),  # no body at all: "Field required", as before
        ("application/json", '["ada"]', 422),  # JSON, just not an object: the usual 422
        ("application/json", '{"name": 1}', 422),
    ],
)
async def test_json_bodies_are_answered_as_before(
    client: httpx.AsyncClient, content_type: str | None, body: str, status: int
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    answer = await client.post("/test-only/thing", content=body, headers=headers)
    assert answer.status_code == status, answer.text
    if status == 422:
        assert answer.json()["detail"] != SEND_JSON


@pytest.mark.parametrize(
    ("authorization", "says"),
    [
        (None, "missing API key: send 'Authorization: Bearer <key>'"),
        (
            "hk_live_abc123",
            "API key not sent as a bearer token: send 'Authorization: Bearer <key>'",
        ),
        (
            "Token hk_live_abc123",
            "API key not sent as a bearer token: send 'Authorization: Bearer <key>'",
        ),
        (
            "Basic dXNlcjpwYXNz",
            "API key not sent as a bearer token: send 'Authorization: Bearer <key>'",
        ),
    ],
)
async def test_a_key_without_bearer_is_told_how_to_send_it(
    client: httpx.AsyncClient, authorization: str | None, says: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    answer = await client.get("/test-only/mine", headers=headers)
    assert answer.status_code == 401, answer.text
    assert answer.json()["detail"] == says
    assert answer.headers["www-authenticate"] == "Bearer"
    # The key itself is never echoed back.
    assert "abc123" not in answer.text


async def test_the_favicon_is_served_at_the_root_and_named_by_the_console(
    client: httpx.AsyncClient,
) -> None:
    icon = await client.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/x-icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO header
    svg = await client.get("/console/static/favicon.svg")
    assert svg.status_code == 200
    assert svg.headers["content-type"].startswith("image/svg+xml")
    page = await client.get("/console/sign-in")
    assert page.status_code == 200, page.text
    assert '<link rel="icon" href="/favicon.ico"' in page.text
