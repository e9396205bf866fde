"""The REST contract: CRUD, validation errors that name the field, auth, tenant isolation,
idempotency and body limits, against the real API process and database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx

from devtools.sinks import Sinks
from tests.harness import Tenant, events, wait_for_status


def field_of(response: httpx.Response) -> list[str]:
    return [str(err["loc"][-1]) for err in response.json()["detail"]]


async def test_users_can_be_created_read_replaced_and_deleted(tenant: Tenant) -> None:
    c = tenant.client
    created = await c.post(
        "/v1/users",
        json={
            "id": "ada",
            "email": "ada@example.com",
            "phone": "+447700900123",
            "locale": "en-GB",
            "timezone": "Europe/London",
            "preferences": {"sms": False},
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["preferences"] == {"email": True, "sms": False, "push": True}
    assert (await c.post("/v1/users", json={"id": "ada"})).status_code == 409

    replaced = await c.put("/v1/users/ada", json={"email": "lovelace@example.com"})
    assert replaced.status_code == 200
    assert (await c.get("/v1/users/ada")).json()["email"] == "lovelace@example.com"
    assert (await c.get("/v1/users/ada")).json()["phone"] is None

    assert (await c.delete("/v1/users/ada")).status_code == 204
    assert (await c.get("/v1/users/ada")).status_code == 404
    assert (await c.delete("/v1/users/ada")).status_code == 404


async def test_bad_user_fields_are_named_in_the_422(tenant: Tenant) -> None:
    c = tenant.client
    bad_phone = await c.post("/v1/users", json={"id": "x", "phone": "07700 900123"})
    assert bad_phone.status_code == 422
    assert field_of(bad_phone) == ["phone"]
    assert "E.164" in bad_phone.json()["detail"][0]["msg"]
    bad_email = await c.post("/v1/users", json={"id": "x", "email": "not-an-address"})
    assert field_of(bad_email) == ["email"]
    bad_zone = await c.post("/v1/users", json={"id": "x", "timezone": "Mars/Olympus"})
    assert field_of(bad_zone) == ["timezone"]


async def test_devices_need_an_existing_user(tenant: Tenant) -> None:
    response = await tenant.client.post(
        "/v1/users/ghost/devices", json={"token": "t", "platform": "ios"}
    )
    assert response.status_code == 404


async def test_templates_keep_every_version(tenant: Tenant) -> None:
    c = tenant.client
    body = {
        "key": "welcome",
        "channel": "email",
        "locale": "en",
        "subject": "Hi",
        "body": "<p>v1</p>",
    }
    first = await c.post("/v1/templates", json=body)
    assert (first.status_code, first.json()["version"]) == (201, 1)
    assert (await c.post("/v1/templates", json=body)).status_code == 409
    second = await c.put("/v1/templates/welcome", json={**body, "body": "<p>v2</p>"})
    assert (second.status_code, second.json()["version"]) == (200, 2)

    latest = (await c.get("/v1/templates/welcome")).json()["versions"]
    assert [(v["version"], v["body"]) for v in latest] == [(2, "<p>v2</p>")]
    old = (await c.get("/v1/templates/welcome", params={"version": 1})).json()["versions"]
    assert [(v["version"], v["body"]) for v in old] == [(1, "<p>v1</p>")]
    assert (await c.get("/v1/templates/welcome", params={"version": 9})).status_code == 404


async def test_template_errors_are_caught_when_saved(tenant: Tenant) -> None:
    c = tenant.client
    syntax = await c.post(
        "/v1/templates", json={"key": "k", "channel": "sms", "body": "Hi {{ name "}
    )
    assert syntax.status_code == 422
    assert field_of(syntax) == ["body"]
    no_subject = await c.post("/v1/templates", json={"key": "k", "channel": "email", "body": "x"})
    assert field_of(no_subject) == ["subject"]


async def test_notification_for_a_missing_template_is_refused(tenant: Tenant) -> None:
    user = await tenant.user()
    response = await tenant.client.post(
        "/v1/notifications",
        json={"channel": "sms", "user_id": user["id"], "template": "does-not-exist"},
    )
    assert response.status_code == 422
    assert field_of(response) == ["template"]
    listed = await tenant.client.get("/v1/notifications", params={"user_id": user["id"]})
    assert listed.json()["items"] == []  # nothing half-created


async def test_malformed_requests_get_clear_4xx(tenant: Tenant) -> None:
    c = tenant.client
    bad_json = await c.post(
        "/v1/notifications",
        content=b'{"channel": "email",',
        headers={"content-type": "application/json"},
    )
    assert bad_json.status_code == 422
    assert "JSON" in str(bad_json.json()["detail"])

    unknown_channel = await c.post(
        "/v1/notifications", json={"channel": "fax", "user_id": "u", "template": "t"}
    )
    assert unknown_channel.status_code == 422
    assert field_of(unknown_channel) == ["channel"]

    missing = await c.post("/v1/notifications/email", json={"template": "t"})
    assert field_of(missing) == ["user_id"]

    naive_time = await c.post(
        "/v1/notifications/sms",
        json={"user_id": "u", "template": "t", "send_at": "2030-01-01T09:00:00"},
    )
    assert field_of(naive_time) == ["send_at"]

    huge = await c.post(
        "/v1/notifications/sms",
        json={"user_id": "u", "template": "t", "data": {"x": "a" * 200_000}},
    )
    assert huge.status_code == 413
    assert "larger than" in huge.json()["detail"]

    async def stream() -> AsyncIterator[bytes]:
        for _ in range(3):  # no Content-Length: the limit must hold while streaming
            yield b" " * 50_000

    chunked = await c.post(
        "/v1/notifications/sms",
        content=stream(),
        headers={"content-type": "application/json"},
    )
    assert chunked.status_code == 413


async def test_every_v1_route_needs_a_valid_key(tenant: Tenant) -> None:
    base = str(tenant.client.base_url)
    async with httpx.AsyncClient(base_url=base) as anonymous:
        missing = await anonymous.get("/v1/notifications")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = await anonymous.get(
            "/v1/notifications", headers={"Authorization": "Bearer hk_not-a-key"}
        )
        assert wrong.status_code == 401
        assert (await anonymous.get("/healthz")).status_code == 200


async def test_another_tenants_notification_is_not_found(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    user = await tenant.user()
    key = await tenant.template("sms", "Hi", None)
    nid = await tenant.send("sms", user["id"], key)
    await wait_for_status(tenant.client, nid)

    for call in (
        other_tenant.client.get(f"/v1/notifications/{nid}"),
        other_tenant.client.get(f"/v1/notifications/{nid}/events"),
        other_tenant.client.post(f"/v1/notifications/{nid}/cancel"),
        other_tenant.client.post(f"/v1/notifications/{nid}/resend"),
        other_tenant.client.get(f"/v1/users/{user['id']}"),
        other_tenant.client.get(f"/v1/templates/{key}"),
    ):
        assert (await call).status_code == 404
    listed = await other_tenant.client.get("/v1/notifications")
    assert listed.json()["items"] == []
    # The other tenant cannot even use the first tenant's template.
    foreign = await other_tenant.client.post(
        "/v1/notifications", json={"channel": "sms", "user_id": user["id"], "template": key}
    )
    assert foreign.status_code == 422


async def test_idempotency_key_replays_and_conflicts(tenant: Tenant, sinks: Sinks) -> None:
    user = await tenant.user()
    key = await tenant.template("email", "<p>Hi {{ n }}</p>", "Hi")
    body = {"channel": "email", "user_id": user["id"], "template": key, "data": {"n": 1}}
    headers = {"Idempotency-Key": f"order-{uuid.uuid4()}"}

    first = await tenant.client.post("/v1/notifications", json=body, headers=headers)
    second = await tenant.client.post("/v1/notifications", json=body, headers=headers)
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json()["id"] == second.json()["id"]
    await wait_for_status(tenant.client, first.json()["id"])
    third = await tenant.client.post("/v1/notifications", json=body, headers=headers)
    assert (third.status_code, third.json()["status"]) == (200, "sent")

    different = await tenant.client.post(
        "/v1/notifications", json={**body, "data": {"n": 2}}, headers=headers
    )
    assert different.status_code == 409
    assert "different request body" in different.json()["detail"]

    assert len(sinks.state.received("email", to=user["email"])) == 1
    listed = await tenant.client.get("/v1/notifications", params={"user_id": user["id"]})
    assert len(listed.json()["items"]) == 1


async def test_listing_filters_and_pages(tenant: Tenant) -> None:
    user = await tenant.user(preferences={"email": True, "sms": False, "push": True})
    sms = await tenant.template("sms", "Hi", None)
    ids = [await tenant.send("sms", user["id"], sms) for _ in range(5)]
    for nid in ids:
        await wait_for_status(tenant.client, nid)

    seen: list[str] = []
    cursor = None
    while True:
        params = {"user_id": user["id"], "status": "suppressed", "limit": 2}
        page = (
            await tenant.client.get(
                "/v1/notifications", params={**params, **({"cursor": cursor} if cursor else {})}
            )
        ).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)
    assert seen == list(reversed(ids))  # newest first
    none_sent = await tenant.client.get(
        "/v1/notifications", params={"user_id": user["id"], "status": "sent"}
    )
    assert none_sent.json()["items"] == []
    bad = await tenant.client.get("/v1/notifications", params={"status": "lost"})
    assert bad.status_code == 422 and field_of(bad) == ["status"]


async def test_event_log_is_404_for_unknown_ids_and_422_for_bad_ones(tenant: Tenant) -> None:
    assert (await tenant.client.get(f"/v1/notifications/{uuid.uuid4()}/events")).status_code == 404
    assert (await tenant.client.get("/v1/notifications/not-a-uuid")).status_code == 422


async def test_request_id_is_echoed(tenant: Tenant) -> None:
    response = await tenant.client.get("/v1/notifications", headers={"X-Request-ID": "req-123"})
    assert response.headers["x-request-id"] == "req-123"
    generated = await tenant.client.get("/v1/notifications")
    assert len(generated.headers["x-request-id"]) == 32


async def test_readyz_reports_each_backing_service(tenant: Tenant) -> None:
    response = await tenant.client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"postgresql": "ok", "temporal": "ok", "rabbitmq": "ok"}


async def test_events_are_ordered_oldest_first(tenant: Tenant) -> None:
    user = await tenant.user()
    key = await tenant.template("sms", "Hi", None)
    nid = await tenant.send("sms", user["id"], key)
    await wait_for_status(tenant.client, nid)
    log = await events(tenant.client, nid)
    assert [e["at"] for e in log] == sorted(e["at"] for e in log)


async def test_nul_characters_are_refused_at_the_door(tenant: Tenant) -> None:
    user = await tenant.user()
    key = await tenant.template("sms", "Hi {{ name }}", None)
    in_data = await tenant.client.post(
        "/v1/notifications",
        json={
            "channel": "sms",
            "user_id": user["id"],
            "template": key,
            "data": {"name": "a\u0000b"},
        },
    )
    assert in_data.status_code == 422
    assert field_of(in_data) == ["data"]
    in_template = await tenant.client.post(
        "/v1/templates", json={"key": "nul", "channel": "sms", "body": "Hi\u0000"}
    )
    assert in_template.status_code == 422
    assert field_of(in_template) == ["body"]
