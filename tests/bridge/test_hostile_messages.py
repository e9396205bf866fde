"""Hostile queued messages on the real bridge: each is dead-lettered at once with its
reason in ``x-herald-error``, and a valid message published after them is sent promptly.
Sixty messages whose tenant holds a NUL character once held the queue (PostgreSQL's
refusal read as an outage); now they are the messages' fault."""

from __future__ import annotations

import time
import uuid

from sqlalchemy.ext.asyncio import AsyncEngine

from devtools.processes import ManagedProcess
from herald import amqp
from herald.contracts import Channel
from tests import fuzz_corpus
from tests.bridge.support import requests, wait_dead, wait_statuses
from tests.harness import Stack, Tenant, new_run_id, producer_settings

NUL_TENANTS = 60


async def test_hostile_messages_are_dead_lettered_with_a_reason_and_valid_ones_flow(
    stack: Stack, bridge: ManagedProcess, engine: AsyncEngine, tenant: Tenant
) -> None:
    settings = stack.settings
    user = await tenant.user()
    sms = await tenant.template("sms", "n={{ n }}", None)
    first, after = requests(tenant.name, user["id"], {Channel.sms: sms}, 2)
    good = first.model_dump(mode="json")

    def body(**changes: object) -> bytes:
        return fuzz_corpus.dumps(good | {"id": str(uuid.uuid4())} | changes)

    run = new_run_id()
    hostile = {
        f"nul-tenant-{run}-{i}": (body(tenant=f"{tenant.name}\x00{i}"), "NUL")
        for i in range(NUL_TENANTS)
    } | {
        f"surrogate-tenant-{run}": (body(tenant="a\ud800"), "Invalid JSON"),
        f"nul-user-{run}": (body(user_id="a\x00b"), "user_id"),
        f"nul-data-key-{run}": (body(data={"\x00": 1}), "NUL"),
        f"nul-data-deep-{run}": (body(data={"a": [{"b": "x\x00"}]}), "NUL"),
        f"invalid-utf8-{run}": (fuzz_corpus.INVALID_UTF8, "Invalid JSON"),
        f"deep-json-{run}": (
            # Deeper than the parser allows; shallow enough for ``herald dead list`` to show
            # (it decodes dead letters with Python's recursive json, which stops near 1,000).
            body(data="DEEP").replace(b'"DEEP"', fuzz_corpus.dumps_deep(500).encode()),
            "invalid message",
        ),
        f"huge-window-{run}": (
            body(digest={"key": "k", "window_seconds": fuzz_corpus.HUGE_INT}),
            "window_seconds",
        ),
        f"huge-body-{run}": (body(data={"x": "x" * (1024 * 1024)}), "the limit is"),
    }
    async with amqp.Publisher(await producer_settings(settings, tenant.name)) as publisher:

        async def publish(raw: bytes, message_id: str) -> None:
            message = amqp.json_message(raw, message_id=message_id)
            await publisher.publish(amqp.REQUESTS_EXCHANGE, Channel.sms.value, message)

        await publish(first.model_dump_json().encode(), str(first.id))
        for message_id, (raw, _) in hostile.items():
            await publish(raw, message_id)
        published = time.monotonic()
        await publish(after.model_dump_json().encode(), str(after.id))

    await wait_statuses(engine, [first.id, after.id], "sent", timeout=60)
    sent_after = time.monotonic() - published
    dead = await wait_dead(settings, set(hostile), timeout=60)
    for message_id, (_, reason) in hostile.items():
        assert reason in dead[message_id].reason, (message_id, dead[message_id].reason)
        assert "gave up after" not in dead[message_id].reason  # refused at once
    assert sent_after < 30
    assert bridge.alive
