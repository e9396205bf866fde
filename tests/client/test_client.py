"""``herald.client`` against a scripted API (httpx ``MockTransport``): idempotency keys,
retries that honour ``Retry-After`` and reuse the key, and errors that carry the API's
answer. No services."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from herald.client import (
    AsyncHeraldClient,
    Conflict,
    HeraldClient,
    HeraldError,
    NotFound,
    RateLimited,
    RetryPolicy,
    Unavailable,
    ValidationFailed,
    retry_after_seconds,
)
from herald.contracts import Channel, NotificationRequest

pytestmark = pytest.mark.fast

NOTIFICATION = {"channel": "email", "user_id": "ada", "template": "welcome", "data": {}}
NOW = "2030-01-01T00:00:00Z"


def accepted(request: httpx.Request) -> httpx.Response:
    notification_id = uuid.uuid4()
    return httpx.Response(
        202,
        json={
            "id": str(notification_id),
            "status": "accepted",
            "status_url": f"http://api/v1/notifications/{notification_id}",
        },
    )


class Script:
    """Answers each request with the next of ``answers`` and records what was sent."""

    def __init__(self, *answers: Callable[[httpx.Request], httpx.Response]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answers[min(len(self.requests), len(self.answers)) - 1](request)


def status(
    code: int, body: Any = None, **headers: str
) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(code, json=body or {"detail": "no"}, headers=headers)


def client(script: Script, waits: list[float], **policy: Any) -> HeraldClient:
    return HeraldClient(
        "http://api",
        "hk_test",
        transport=httpx.MockTransport(script),
        retry=RetryPolicy(**policy),
        sleep=waits.append,
    )


def test_every_send_carries_a_fresh_idempotency_key_and_the_api_key() -> None:
    script = Script(accepted)
    with client(script, []) as herald:
        first = herald.send(NOTIFICATION)
        herald.send(NotificationRequest(channel=Channel.email, user_id="ada", template="welcome"))
    keys = [request.headers["Idempotency-Key"] for request in script.requests]
    assert len(set(keys)) == 2 and all(uuid.UUID(key) for key in keys)
    assert script.requests[0].headers["Authorization"] == "Bearer hk_test"
    assert json.loads(script.requests[1].content)["template"] == "welcome"
    assert first.status == "accepted"


def test_a_429_is_retried_after_its_retry_after_with_the_same_key() -> None:
    script = Script(
        status(429, **{"Retry-After": "2"}), status(503, **{"Retry-After": "1"}), accepted
    )
    waits: list[float] = []
    with client(script, waits) as herald:
        answer = herald.send(NOTIFICATION, idempotency_key="signup-ada")
    assert answer.status == "accepted"
    assert waits == [2.0, 1.0]
    assert {r.headers["Idempotency-Key"] for r in script.requests} == {"signup-ada"}
    assert len(script.requests) == 3


def test_a_generated_key_is_reused_across_retries() -> None:
    script = Script(status(503, **{"Retry-After": "0"}), accepted)
    with client(script, []) as herald:
        herald.send(NOTIFICATION)
    first, second = (r.headers["Idempotency-Key"] for r in script.requests)
    assert first == second


def test_retry_after_as_an_http_date_and_the_cap() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    assert 100 < (retry_after_seconds(later) or 0) <= 120
    assert retry_after_seconds("soon") is None
    script = Script(status(429, **{"Retry-After": later}), accepted)
    waits: list[float] = []
    with client(script, waits, max_wait=5) as herald:
        herald.send(NOTIFICATION)
    assert waits == [5]


def test_without_retry_after_the_wait_backs_off() -> None:
    script = Script(status(503), status(503), accepted)
    waits: list[float] = []
    with client(script, waits, backoff=0.25) as herald:
        herald.send(NOTIFICATION)
    assert waits == [0.25, 0.5]


def test_retries_end_with_the_last_error_and_its_body() -> None:
    script = Script(status(429, {"detail": "rate limit"}, **{"Retry-After": "1"}))
    with client(script, [], attempts=3) as herald, pytest.raises(RateLimited) as caught:
        herald.send(NOTIFICATION)
    assert len(script.requests) == 3
    assert caught.value.status == 429 and caught.value.detail == "rate limit"
    assert caught.value.retry_after == 1.0


@pytest.mark.parametrize("code", [400, 404, 409, 422, 500])
def test_other_errors_are_not_retried(code: int) -> None:
    script = Script(status(code))
    with client(script, []) as herald, pytest.raises(HeraldError) as caught:
        herald.cancel_notification(uuid.uuid4())
    assert len(script.requests) == 1 and caught.value.status == code


def test_errors_by_status_carry_the_body() -> None:
    script = Script(
        status(404, {"detail": "notification not found"}),
        status(409, {"detail": "already sent"}),
        lambda request: httpx.Response(500, text="boom"),
    )
    with client(script, []) as herald:
        with pytest.raises(NotFound, match="notification not found"):
            herald.get_notification(uuid.uuid4())
        with pytest.raises(Conflict) as conflict:
            herald.cancel_notification(uuid.uuid4())
        with pytest.raises(HeraldError) as plain:
            herald.get_user("ada")
    assert conflict.value.body == {"detail": "already sent"}
    assert plain.value.body == "boom" and "GET http://api/v1/users/ada" in str(plain.value)


def test_a_422_names_the_fields() -> None:
    detail = [
        {"loc": ["body", "user_id"], "msg": "String should match pattern", "type": "x"},
        {"loc": ["body", "data", "name"], "msg": "missing", "type": "y"},
        {"msg": "no location"},
    ]
    script = Script(status(422, {"detail": detail}))
    with client(script, []) as herald, pytest.raises(ValidationFailed) as caught:
        herald.send({**NOTIFICATION, "user_id": "a b"})
    assert caught.value.fields == ["user_id", "data.name", "no location"]
    assert "user_id" in str(caught.value)


def test_batch_items_and_flow_triggers_get_keys_once() -> None:
    batch = {"results": [{"index": 0, "status": 202, "id": str(uuid.uuid4())}]}
    trigger = {"trigger_id": str(uuid.uuid4()), "runs": []}
    script = Script(
        status(503, **{"Retry-After": "0"}),
        lambda r: httpx.Response(200, json=batch),
        status(503, **{"Retry-After": "0"}),
        lambda r: httpx.Response(202, json=trigger),
    )
    with client(script, []) as herald:
        herald.send_batch([NOTIFICATION, {**NOTIFICATION, "idempotency_key": "mine"}])
        herald.trigger_flow("trial", {"recipients": ["ada"], "data": {}})
    first, second, third, fourth = (json.loads(r.content) for r in script.requests)
    assert first == second and third == fourth
    assert first["notifications"][1]["idempotency_key"] == "mine"
    assert uuid.UUID(first["notifications"][0]["idempotency_key"])
    assert uuid.UUID(third["idempotency_key"])


def test_paths_queries_and_typed_answers() -> None:
    user = {"id": "ada", "email": "ada@example.com", "created_at": NOW, "updated_at": NOW}
    topic = {"key": "news", "name": None, "subscribers": 0, "created_at": NOW, "updated_at": NOW}
    script = Script(
        lambda r: httpx.Response(200, json=user),
        lambda r: httpx.Response(200, json={"items": [], "next_cursor": None}),
        lambda r: httpx.Response(200, json=topic),
        lambda r: httpx.Response(204),
        lambda r: httpx.Response(201, json={"token": "t", "expires_at": NOW}),
    )
    with client(script, []) as herald:
        assert herald.put_user("ada", {"email": "ada@example.com"}).email == "ada@example.com"
        assert herald.list_notifications(status="sent", user_id="ada", limit=5).items == []
        assert herald.put_topic("news").subscribers == 0
        assert herald.unsubscribe("news", "ada") is None
        assert herald.issue_inbox_token("ada", ttl_seconds=60).token == "t"
    sent = [(r.method, r.url.path, dict(r.url.params)) for r in script.requests]
    assert sent == [
        ("PUT", "/v1/users/ada", {}),
        ("GET", "/v1/notifications", {"status": "sent", "user_id": "ada", "limit": "5"}),
        ("PUT", "/v1/topics/news", {}),
        ("DELETE", "/v1/topics/news/subscribers/ada", {}),
        ("POST", "/v1/inbox/tokens", {}),
    ]
    assert json.loads(script.requests[4].content) == {"user_id": "ada", "ttl_seconds": 60}


async def test_the_async_client_retries_with_the_same_key() -> None:
    script = Script(status(429, **{"Retry-After": "3"}), accepted)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async with AsyncHeraldClient(
        "http://api", "hk_test", transport=httpx.MockTransport(script), sleep=sleep
    ) as herald:
        answer = await herald.send(NOTIFICATION)
        with pytest.raises(Unavailable):
            script.answers = [status(503, **{"Retry-After": "0"})]
            script.requests.clear()
            await herald.get_notification(answer.id)
    assert waits[0] == 3.0
    assert len(script.requests) == RetryPolicy().attempts


def test_importing_the_client_loads_no_server_code() -> None:
    code = (
        "import sys, herald.client; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('fastapi', 'starlette', 'uvicorn', 'sqlalchemy', 'asyncpg', 'aio_pika', 'jinja2')"
        " or m.startswith(('api.routes', 'api.services', 'api.main'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"


def test_the_inbox_token_answer_matches_the_api_model() -> None:
    # The client keeps its own copy: api.schemas.inbox loads SQLAlchemy and PyJWT.
    from api.schemas.inbox import TokenOut
    from herald.client import InboxToken

    assert (
        InboxToken.model_json_schema()["properties"] == TokenOut.model_json_schema()["properties"]
    )
