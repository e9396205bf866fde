"""Queued requests with a digest join it as REST requests do: one email for the lot,
even when a message is published twice."""

from __future__ import annotations

import asyncio
import re
import time
import uuid

from devtools.processes import ManagedProcess
from devtools.sinks import Sinks
from herald.contracts import DigestSpec, QueuedNotification
from herald.producer import NotificationProducer
from herald.settings import Settings
from tests.harness import Tenant, producer_settings


async def test_queued_requests_with_a_digest_become_one_email(
    tenant: Tenant, sinks: Sinks, settings: Settings, bridge: ManagedProcess
) -> None:
    user = await tenant.user()
    template = await tenant.template(
        "email", "{% for item in items %}[{{ item.n }}]{% endfor %}", "{{ count }} updates"
    )
    messages = [
        QueuedNotification(
            id=uuid.uuid4(),
            tenant=tenant.name,
            channel="email",
            user_id=user["id"],
            template=template,
            data={"n": n},
            digest=DigestSpec(key="queued", window_seconds=4),
        )
        for n in range(5)
    ]

    async with NotificationProducer(
        settings=await producer_settings(settings, tenant.name)
    ) as producer:
        for message in [*messages, messages[2]]:  # the third one published twice
            await producer.publish(message)

    deadline = time.monotonic() + 60
    while not sinks.state.received("email", to=user["email"]):
        assert time.monotonic() < deadline, "the digest never arrived"
        await asyncio.sleep(0.2)
    await asyncio.sleep(2)
    (mail,) = sinks.state.received("email", to=user["email"])
    assert mail.subject == "5 updates"
    # The bridge starts messages concurrently: items are in the order it signalled them.
    assert sorted(re.findall(r"\[(\d)\]", mail.body)) == ["0", "1", "2", "3", "4"]
