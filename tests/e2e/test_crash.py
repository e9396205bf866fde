"""Killing a channel worker mid-send loses nothing; stopping it gracefully finishes the send."""

from __future__ import annotations

import asyncio
import time

from devtools.sinks import Rule, Sinks
from tests.harness import Stack, Tenant, wait_for_status


async def _wait_for_attempt(sinks: Sinks, recipient: str, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while sinks.state.attempts.get(recipient, 0) < count:
        assert time.monotonic() < deadline, f"no attempt {count} reached the sink"
        await asyncio.sleep(0.05)


async def test_sigkill_of_the_email_worker_mid_send_still_ends_sent(
    tenant: Tenant, sinks: Sinks, stack: Stack
) -> None:
    user = await tenant.user()
    # The SMTP server takes 2 s to answer DATA: the worker dies while the send is in flight.
    sinks.state.add_rule(Rule(match=user["email"], delay=2.0))
    key = await tenant.template("email", "<p>Important</p>", "Important")
    nid = await tenant.send("email", user["id"], key)
    worker = stack.processes["worker-email"]

    await _wait_for_attempt(sinks, user["email"], 1)
    worker.kill()
    worker.start()

    final = await wait_for_status(tenant.client, nid, timeout=90)
    assert final["status"] == "sent"
    copies = sinks.state.received("email", to=user["email"])
    assert copies, "the email never arrived"
    # A copy accepted by the server just before the kill may arrive twice, never with a
    # new identity: a receiver drops the second by Message-ID.
    assert {copy.message_id for copy in copies} == {f"<{nid}@localhost>"}
    await asyncio.to_thread(stack.wait_ready, "worker-email")  # as later tests expect it


async def test_sigterm_lets_the_in_flight_send_finish(
    tenant: Tenant, sinks: Sinks, stack: Stack
) -> None:
    user = await tenant.user()
    sinks.state.add_rule(Rule(match=user["phone"], delay=2.0))
    key = await tenant.template("sms", "Hi", None)
    nid = await tenant.send("sms", user["id"], key)
    worker = stack.processes["worker-sms"]

    await _wait_for_attempt(sinks, user["phone"], 1)
    exit_code = await asyncio.to_thread(worker.stop)
    worker.start()

    assert exit_code == 0
    final = await wait_for_status(tenant.client, nid, timeout=60)
    assert (final["status"], final["attempts"]) == ("sent", 1)
    assert len(sinks.state.received("sms", to=user["phone"])) == 1
    await asyncio.to_thread(stack.wait_ready, "worker-sms")  # as later tests expect it
