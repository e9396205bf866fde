"""Scopes on the running Herald: a send-only key submits and follows what it sent but
cannot change a template; a read-only key reads but cannot submit (real PostgreSQL,
Temporal, workers and SMTP sink)."""

from __future__ import annotations

import httpx

from devtools.sinks import Sinks
from herald.db import make_engine
from herald.tenants import create_api_key
from tests.harness import Stack, Tenant, wait_for_status


async def _key(stack: Stack, tenant: Tenant, *scopes: str) -> httpx.AsyncClient:
    engine = make_engine(stack.settings, pool_size=1)
    try:
        key = await create_api_key(engine, tenant.name, scopes=frozenset(scopes))
    finally:
        await engine.dispose()
    return httpx.AsyncClient(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


async def test_a_send_only_key_sends_and_reads_but_cannot_manage_and_a_read_key_cannot_send(
    stack: Stack, tenant: Tenant, sinks: Sinks
) -> None:
    template = await tenant.template("email", "<p>Hi {{ name }}</p>")
    user = await tenant.user()
    sender = await _key(stack, tenant, "send")
    reader = await _key(stack, tenant, "read")
    try:
        submitted = await sender.post(
            "/v1/notifications",
            json={
                "channel": "email",
                "user_id": user["id"],
                "template": template,
                "data": {"name": "Ada"},
            },
        )
        assert submitted.status_code == 202, submitted.text
        notification_id = submitted.json()["id"]
        sent = await wait_for_status(sender, notification_id)
        assert sent["status"] == "sent", sent
        assert sinks.state.received("email", to=user["email"])
        events = await sender.get(f"/v1/notifications/{notification_id}/events")
        assert events.status_code == 200

        changed = await sender.put(
            f"/v1/templates/{template}",
            json={"key": template, "channel": "email", "subject": "x", "body": "<p>x</p>"},
        )
        assert (changed.status_code, changed.json()["detail"]) == (
            403,
            "this API key needs scope 'manage'",
        )

        refused = await reader.post(
            "/v1/notifications",
            json={"channel": "email", "user_id": user["id"], "template": template},
        )
        assert (refused.status_code, refused.json()["detail"]) == (
            403,
            "this API key needs scope 'send'",
        )
        assert (await reader.get(f"/v1/notifications/{notification_id}")).status_code == 200
        listed = await tenant.client.get("/v1/notifications", params={"user_id": user["id"]})
        assert [item["id"] for item in listed.json()["items"]] == [notification_id]
    finally:
        await sender.aclose()
        await reader.aclose()
