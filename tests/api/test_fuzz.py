"""Schemathesis against the live API, from its ``/openapi.json`` with a real API key: whatever it
sends, no 5xx and no response outside the documented schema. Then the hostile corpus
(``tests/fuzz_corpus.py``) in every path, query and body field of every operation on the
live API process (no 5xx, no dropped connection), and schemathesis once more in this
process (a few derandomized examples per operation), both on the session's real services."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core import NOT_SET
from schemathesis.specs.openapi.checks import response_schema_conformance

from api.main import create_app
from herald.settings import Settings
from tests import fuzz_corpus
from tests.harness import Stack, new_tenant

# Bounded for CI: examples per operation (about 20 operations).
MAX_EXAMPLES = 25


@pytest.fixture(scope="module")
async def fuzz_key(stack: Stack) -> str:
    """A real API key of a tenant whose rate limit the fuzzer cannot reach."""
    tenant = await new_tenant(stack, f"fuzz-{uuid.uuid4().hex[:8]}", rate_limit_per_minute=10**6)
    await tenant.client.aclose()
    return str(tenant.client.headers["Authorization"]).removeprefix("Bearer ")


# The document the API serves (checked against the live one below), loaded at collection.
SPEC = create_app(Settings()).openapi()
schema = schemathesis.openapi.from_dict(SPEC)


def test_the_live_api_serves_this_schema(stack: Stack) -> None:
    assert httpx.get(f"{stack.api_url}/openapi.json").json() == SPEC


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_errors_and_responses_match_the_schema(
    case: schemathesis.Case, stack: Stack, fuzz_key: str
) -> None:
    case.call_and_validate(
        base_url=stack.api_url,
        headers={"Authorization": f"Bearer {fuzz_key}"},
        checks=[not_a_server_error, response_schema_conformance],
        timeout=30,
    )


# --- The corpus (``tests/fuzz_corpus.py``) in every field of every route ---------------

# Valid bodies, so that each hostile value is the only thing wrong and reaches as far as
# it can (the database, Temporal); operations not named get a body built from the schema.
USER, TEMPLATE, TOPIC = "fuzz-user", "fuzz-template", "fuzz-topic"
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/v1/users"): {"id": USER, "email": "fuzz@example.com"},
    ("put", "/v1/users/{user_id}"): {"email": "fuzz@example.com"},
    ("post", "/v1/templates"): {"key": TEMPLATE, "channel": "email", "subject": "s", "body": "b"},
    ("put", "/v1/templates/{key}"): {"key": TEMPLATE, "channel": "email", "body": "b"},
    ("post", "/v1/templates/{key}/preview"): {"channel": "email", "data": {}},
    ("post", "/v1/notifications"): {"channel": "email", "user_id": USER, "template": TEMPLATE},
    ("post", "/v1/users/{user_id}/devices"): {"token": "tok", "platform": "android"},
    ("post", "/v1/webhooks"): {"url": "https://example.com/hook"},
    ("post", "/v1/topics/{key}/subscribers"): {"user_ids": [USER]},
    ("post", "/v1/broadcasts"): {
        "channel": "email",
        "template": TEMPLATE,
        "audience": {"user_ids": [USER]},
    },
    ("post", "/v1/notifications/batch"): {
        "notifications": [{"channel": "email", "user_id": USER, "template": TEMPLATE}]
    },
}
PATH_VALUES = {"user_id": USER, "key": TEMPLATE, "token": "not-a-token"}
DEEP = "__deep__"


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        return _resolve(SPEC["components"]["schemas"][ref.rsplit("/", 1)[1]])
    for option in schema.get("anyOf", []):
        if option.get("type") != "null":
            return _resolve(option)
    return schema


def _minimal(schema: dict[str, Any]) -> Any:
    """The smallest instance of ``schema`` this generator can tell is valid enough."""
    schema = _resolve(schema)
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: _minimal(props[name]) for name in schema.get("required", [])}
    if kind == "array":
        return [_minimal(schema.get("items", {}))] * schema.get("minItems", 0)
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return False
    return "fuzz"


def _body_of(method: str, path: str, operation: dict[str, Any]) -> dict[str, Any] | None:
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return None
    return BODIES.get((method, path)) or _minimal(content["schema"])


def _encode(body: Any) -> bytes:
    """JSON bytes, with the deep-nesting sentinel swapped for deep JSON text (no
    recursive encoder could build it)."""
    text = fuzz_corpus.dumps(body).decode()
    return text.replace(f'"{DEEP}"', fuzz_corpus.dumps_deep()).encode()


def _hostile(value_name: str, value: Any) -> Any:
    return DEEP if value_name == "deep-json" else value


def _requests() -> list[tuple[str, str, str, bytes | None]]:
    """``(what, method, url, body)`` for every hostile value in every path parameter,
    query parameter and top-level body field (and inside ``data``) of every operation."""
    made: list[tuple[str, str, str, bytes | None]] = []
    for path, operations in SPEC["paths"].items():
        for method, operation in operations.items():
            params = operation.get("parameters", [])
            in_path = {p["name"] for p in params if p["in"] == "path"}
            fill = {name: PATH_VALUES.get(name, str(uuid.uuid4())) for name in in_path}
            base_url = path.format(**fill)
            body = _body_of(method, path, operation)
            raw = None if body is None else _encode(body)
            for name in sorted(in_path):
                for value_name, value in fuzz_corpus.QUERY.items():
                    url = path.format(**{**fill, name: value})
                    made.append((f"{method} {path} path {name}={value_name}", method, url, raw))
            for param in (p for p in params if p["in"] == "query"):
                for value_name, value in fuzz_corpus.QUERY.items():
                    url = f"{base_url}?{param['name']}={value}"
                    what = f"{method} {path} query {param['name']}={value_name}"
                    made.append((what, method, url, raw))
            if body is None:
                continue
            for field in sorted(body) or ["data"]:
                for value_name, value in fuzz_corpus.VALUES.items():
                    changed = {**body, field: _hostile(value_name, value)}
                    what = f"{method} {path} body {field}={value_name}"
                    made.append((what, method, base_url, _encode(changed)))
            for value_name, value in fuzz_corpus.VALUES.items():
                if value_name == "10mb":
                    continue  # the body limit answers it above
                data = {"k": _hostile(value_name, value)}
                what = f"{method} {path} body data.k={value_name}"
                made.append((what, method, base_url, _encode({**body, "data": data})))
    return made


async def test_every_hostile_value_in_every_field_is_refused_without_a_server_error(
    stack: Stack, fuzz_key: str
) -> None:
    """No 5xx and no dropped connection for any corpus value in any path, query or body
    field, on the real API process (a dropped connection fails the request here)."""
    headers = {"Authorization": f"Bearer {fuzz_key}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=60) as client:
        for setup in (("/v1/users", BODIES[("post", "/v1/users")]),):
            await client.post(setup[0], json=setup[1])
        await client.put(f"/v1/templates/{TEMPLATE}", json=BODIES[("put", "/v1/templates/{key}")])
        failures = []
        for what, method, url, body in _requests():
            try:
                answer = await client.request(method.upper(), url, content=body)
            except httpx.TransportError as err:
                failures.append(f"{what}: connection dropped ({type(err).__name__})")
                continue
            if answer.status_code >= 500:
                failures.append(f"{what}: {answer.status_code} {answer.text[:200]}")
        healthy = await client.get("/healthz")

    assert failures == []
    assert healthy.status_code == 200


async def test_nul_in_the_query_names_the_field(stack: Stack, fuzz_key: str) -> None:
    headers = {"Authorization": f"Bearer {fuzz_key}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=30) as client:
        by_user = await client.get("/v1/notifications?user_id=%00")
        search = await client.get("/v1/users?search=a%00b")
        surrogate = await client.post(
            "/v1/users", content=b'{"id": "x", "email": "a@example.com", "phone": "\\ud800"}'
        )
        device = await client.post(
            "/v1/users/x/devices", content=b'{"token": "a\\u0000b", "platform": "ios"}'
        )

    assert by_user.status_code == 422, by_user.text
    assert by_user.json()["detail"][0]["loc"] == ["query", "user_id"]
    assert search.status_code == 422, search.text
    assert search.json()["detail"][0]["loc"] == ["query", "search"]
    assert surrogate.status_code == 422
    assert device.status_code == 422
    assert device.json()["detail"][0]["loc"] == ["body", "token"]


# --- Schemathesis in this process, over the whole OpenAPI, a few examples each --------

IN_PROCESS_EXAMPLES = 3


@pytest.fixture(scope="module")
def in_process_api(stack: Stack) -> Iterator[TestClient]:
    """The API app in this process on the session's real services, its lifespan running
    (one client, so one event loop holds the engine and the Temporal client)."""
    with TestClient(create_app(stack.settings), raise_server_exceptions=False) as client:
        yield client


in_process_schema = schemathesis.openapi.from_dict(SPEC)


@in_process_schema.parametrize()
@settings(
    max_examples=IN_PROCESS_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_errors_in_process(
    case: schemathesis.Case, in_process_api: TestClient, fuzz_key: str
) -> None:
    body: Any = None if case.body is NOT_SET else case.body
    sent: dict[str, Any] = {"json": body}
    if isinstance(body, bytes) or (case.media_type and "json" not in case.media_type):
        # Form and raw bodies (the provider callbacks) go as they were generated.
        sent = {"data": body} if isinstance(body, dict) else {"content": body}
    headers = {**(case.headers or {}), "Authorization": f"Bearer {fuzz_key}"}
    if case.media_type and body is not None:
        headers.setdefault("Content-Type", case.media_type)
    answer = in_process_api.request(
        case.method, case.formatted_path, params=case.query, headers=headers, **sent
    )
    assert answer.status_code < 500, (case.method, case.formatted_path, answer.text[:300])
