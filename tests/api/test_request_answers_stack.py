"""The clear answers of ``test_request_answers`` on the real API process and real
routes: what curl sends by default, and a key without ``Bearer ``."""

from __future__ import annotations

import httpx

from api.errors import SEND_JSON
from tests.harness import Stack, Tenant


async def test_curl_without_a_json_content_type_is_told_to_send_one(tenant: Tenant) -> None:
    body = '{"id": "curl-user", "email": "curl@example.com"}'
    form = await tenant.client.post(
        "/v1/users", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert form.status_code == 415, form.text
    assert form.json()["detail"] == SEND_JSON
    assert (await tenant.client.get("/v1/users/curl-user")).status_code == 404  # not created

    as_json = await tenant.client.post(
        "/v1/users", content=body, headers={"Content-Type": "application/json"}
    )
    assert as_json.status_code == 201, as_json.text


async def test_a_key_without_bearer_is_told_how_to_send_it(stack: Stack, tenant: Tenant) -> None:
    key = tenant.client.headers["Authorization"].removeprefix("Bearer ")
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=10) as client:
        bare = await client.get("/v1/users", headers={"Authorization": key})
        none = await client.get("/v1/users")
    assert bare.status_code == 401
    assert bare.json()["detail"] == (
        "API key not sent as a bearer token: send 'Authorization: Bearer <key>'"
    )
    assert key not in bare.text
    assert none.status_code == 401
    assert none.json()["detail"] == "missing API key: send 'Authorization: Bearer <key>'"
