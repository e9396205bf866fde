"""Template bombs at the API, in this process: a preview or a save of a template over a
render limit is a 422 naming the limit, and the API keeps answering while a template
renders (the render runs off the event loop)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from herald.settings import Settings
from tests.api.in_process import (
    api_key_for,
    in_process_client,
    in_process_settings,
    migrated_database,
)
from tests.harness import new_run_id

OUTPUT = "template output exceeds 1048576 bytes"
TIME = "template rendering exceeded 500 ms"
# Refusals come in milliseconds (time-limit ones after 500 ms of CPU): the bound tells a
# hang from a refusal on a loaded machine, it does not time the machine.
HANG = 5.0
BUSY = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"

BOMBS = [
    pytest.param(
        "{% set a = 'x' * 100000 %}" + "{% set a = a + a %}" * 14 + "{{ a|length }}",
        OUTPUT,
        id="plus-doubling",
    ),
    pytest.param(
        "{% set a = 'x' * 100000 %}" + "{% set a = a ~ a %}" * 14 + "{{ a|length }}",
        OUTPUT,
        id="tilde-doubling",
    ),
    pytest.param("{{ 'x' * 100000000 }}", OUTPUT, id="repetition"),
    pytest.param("{{ ('{' ~ ':' * 200000).format() }}", "unmatched", id="format-colon-run"),
    pytest.param("{{ '{:>99999999}'.format(1) }}", OUTPUT, id="format-width"),
    pytest.param("{{ 'a'|center(10**9) }}", OUTPUT, id="center"),
    pytest.param("{{ ([('x' * 100000)] * 1000)|join }}", OUTPUT, id="join"),
    pytest.param("{{ range(10**9)|list }}", OUTPUT, id="range"),
    pytest.param(BUSY, TIME, id="nested-loops"),
    pytest.param(
        "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", OUTPUT, id="loop-output"
    ),
    pytest.param(
        "{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}{% endif %}{% endmacro %}"
        "{{ m(60) }}",
        TIME,
        id="macro-recursion",
    ),
]


@pytest.fixture(scope="module")
def database() -> Iterator[Settings]:
    with migrated_database(in_process_settings()) as settings:
        yield settings


@pytest.fixture(scope="module")
async def api_key(database: Settings) -> str:
    return await api_key_for(database, f"bombs-{new_run_id()}")


@pytest.fixture(scope="module")
async def client(database: Settings, api_key: str) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process_client(database, api_key) as made:
        yield made


@pytest.mark.parametrize(("source", "reason"), BOMBS)
async def test_a_bomb_preview_is_a_422_naming_the_limit(
    client: httpx.AsyncClient, source: str, reason: str
) -> None:
    started = time.monotonic()
    response = await client.post(
        "/v1/templates/bomb/preview", json={"channel": "sms", "body": source}
    )
    assert time.monotonic() - started < HANG
    assert response.status_code == 422, response.text
    assert reason in response.text, response.text


# The colon run is no longer slow, only invalid: an error a save leaves to the data.
LIMIT_BOMBS = [bomb for bomb in BOMBS if bomb.id != "format-colon-run"]


@pytest.mark.parametrize(("source", "reason"), LIMIT_BOMBS)
async def test_a_bomb_is_not_saved(client: httpx.AsyncClient, source: str, reason: str) -> None:
    key = f"bomb-{new_run_id()}"
    response = await client.post(
        "/v1/templates", json={"key": key, "channel": "sms", "body": source}
    )
    assert response.status_code == 422, response.text
    assert reason in response.text, response.text
    assert (await client.get(f"/v1/templates/{key}")).status_code == 404


async def test_a_bomb_behind_data_passes_save_and_is_refused_at_preview(
    client: httpx.AsyncClient,
) -> None:
    key = f"hidden-{new_run_id()}"
    source = "{% if x is defined %}{{ 'x' * 100000000 }}{% endif %}ok"
    saved = await client.post("/v1/templates", json={"key": key, "channel": "sms", "body": source})
    assert saved.status_code == 201, saved.text
    calm = await client.post(f"/v1/templates/{key}/preview", json={"channel": "sms"})
    assert (calm.status_code, calm.json()["body"]) == (200, "ok")
    bomb = await client.post(
        f"/v1/templates/{key}/preview", json={"channel": "sms", "data": {"x": 1}}
    )
    assert bomb.status_code == 422, bomb.text
    assert OUTPUT in bomb.text


async def test_an_ordinary_template_previews_as_before(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/templates/ordinary/preview",
        json={
            "channel": "email",
            "subject": "Order {{ order }}",
            "body": "<p>Hi {{ name }}: {% for i in items %}{{ i }},{% endfor %}</p>",
            "data": {"name": "<Ada>", "order": 7, "items": [1, 2]},
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["html"] == "<p>Hi &lt;Ada&gt;: 1,2,</p>"
    assert response.json()["subject"] == "Order 7"


async def test_healthz_answers_while_a_slow_template_renders(database: Settings) -> None:
    # A longer time limit, so the slow preview is still running while /healthz is asked.
    slow = database.model_copy(update={"render_max_ms": 3000})
    key = await api_key_for(slow, f"slow-{new_run_id()}")
    async with in_process_client(slow, key) as client:
        preview = asyncio.create_task(
            client.post("/v1/templates/slow/preview", json={"channel": "sms", "body": BUSY})
        )
        await asyncio.sleep(0.2)
        answered = 0
        while not preview.done():
            started = time.monotonic()
            health = await client.get("/healthz")
            assert health.status_code == 200
            assert time.monotonic() - started < 1.0
            answered += 1
            await asyncio.sleep(0.1)
        response = await preview
    assert response.status_code == 422, response.text
    assert "template rendering exceeded 3000 ms" in response.text
    assert answered >= 5  # asked again and again while the render ran
