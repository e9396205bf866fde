"""``herald.client`` against the real stack: a notification sent end to end with the sync
and the async client, an idempotent replay, and a 422 that names the field."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from api.schemas.templates import TemplateIn
from devtools.sinks import Sinks
from herald.client import AsyncHeraldClient, HeraldClient, NotFound, ValidationFailed
from herald.contracts import Channel
from tests.harness import TERMINAL, Stack, Tenant


def api_key(tenant: Tenant) -> str:
    return tenant.client.headers["Authorization"].removeprefix("Bearer ")


def send_and_follow(herald: HeraldClient, user_id: str) -> tuple[str, list[str]]:
    """The sync client's whole path: user, template, send, replay, status, events."""
    herald.create_user({"id": user_id, "email": "old@example.com"})
    herald.put_user(user_id, {"email": f"{user_id}@example.com", "locale": "en"})
    assert herald.get_user(user_id).email == f"{user_id}@example.com"
    template = TemplateIn(
        key=f"client-{user_id}", channel=Channel.email, subject="Hi", body="Hello {{ name }}"
    )
    assert herald.create_template(template).version == 1
    template = herald.put_template(template.model_copy(update={"subject": "Hi {{ name }}"}))
    assert template.version == 2
    assert [v.version for v in herald.get_template(template.key).versions] == [2]
    request = {
        "channel": "email",
        "user_id": user_id,
        "template": template.key,
        "data": {"name": "Ada"},
    }
    first = herald.send(request, idempotency_key=f"client-{user_id}")
    again = herald.send(request, idempotency_key=f"client-{user_id}")
    assert again.id == first.id
    deadline = time.monotonic() + 60
    while (status := herald.get_notification(first.id).status) not in TERMINAL:
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    return status, [event.status for event in herald.notification_events(first.id)]


async def test_the_sync_client_sends_a_notification_end_to_end(
    stack: Stack, tenant: Tenant, sinks: Sinks
) -> None:
    user_id = f"c-{uuid.uuid4().hex[:8]}"
    with HeraldClient(stack.api_url, api_key(tenant)) as herald:
        status, events = await asyncio.to_thread(send_and_follow, herald, user_id)
        with pytest.raises(NotFound):
            await asyncio.to_thread(herald.get_notification, uuid.uuid4())
    assert status == "sent"
    assert events[0] == "accepted" and "sent" in events
    (mail,) = sinks.state.received("email", to=f"{user_id}@example.com")
    assert "Hello Ada" in mail.body


async def test_the_async_client_sends_a_notification_end_to_end(
    stack: Stack, tenant: Tenant, sinks: Sinks
) -> None:
    user_id = f"c-{uuid.uuid4().hex[:8]}"
    async with AsyncHeraldClient(stack.api_url, api_key(tenant)) as herald:
        await herald.create_user({"id": user_id, "email": f"{user_id}@example.com"})
        key = (
            await herald.create_template(
                {
                    "key": f"client-{user_id}",
                    "channel": "email",
                    "subject": "Code",
                    "body": "Code {{ code }}",
                }
            )
        ).key
        accepted = await herald.send(
            {"channel": "email", "user_id": user_id, "template": key, "data": {"code": "4711"}}
        )
        deadline = time.monotonic() + 60
        while (await herald.get_notification(accepted.id)).status not in TERMINAL:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        listed = await herald.list_notifications(user_id=user_id)
        assert [n.id for n in listed.items] == [accepted.id]
        assert listed.items[0].status == "sent"

        with pytest.raises(ValidationFailed) as caught:
            await herald.send(
                {
                    "channel": "email",
                    "user_id": "no spaces allowed",
                    "template": key,
                    "data": {"code": "1"},
                }
            )
        assert caught.value.status == 422 and "user_id" in caught.value.fields
        with pytest.raises(ValidationFailed) as missing:
            await herald.send({"channel": "email", "user_id": user_id, "template": key})
        assert "code" in str(missing.value.detail)
    (mail,) = sinks.state.received("email", to=f"{user_id}@example.com")
    assert "Code 4711" in mail.body
