"""A refusal of one recipient is that notification's failure, not the provider's: it is
retried under the notification's own policy and never opens the channel's circuit, so the
other recipients on the same worker are not held back."""

from __future__ import annotations

import asyncio
import re
import uuid

import httpx

from devtools.sinks import Rule, Sinks
from tests.harness import Stack, Tenant, events, wait_for_status

GREYLISTED = "451 4.7.1 greylisted, try again later"
# More refused sends in a row than the default breaker threshold (5) tolerates.
REFUSED_SENDS = 6


async def _breaker_opened(stack: Stack, breaker: str) -> float:
    """How often the email worker's breaker ``breaker`` has opened so far."""
    port = stack.metrics_ports["worker-email"]
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    pattern = rf'^herald_breaker_transitions_total{{breaker="{breaker}",state="open"}} (\S+)$'
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_an_always_greylisting_mailbox_fails_alone_and_opens_no_circuit(
    stack: Stack, tenant: Tenant, sinks: Sinks
) -> None:
    bad_user = await tenant.user(email=f"greylist-{uuid.uuid4().hex[:8]}@example.com")
    sinks.state.add_rule(Rule(match=bad_user["email"], always=GREYLISTED))
    healthy = [await tenant.user() for _ in range(50)]
    key = await tenant.template("email", "<p>Your order shipped.</p>", "Shipped")
    opened_before = await _breaker_opened(stack, "smtp")

    # The refused mailbox first, several times over: consecutive refusals with no success
    # in between, which is what a breaker counting them would trip on.
    bad = [await tenant.send("email", bad_user["id"], key) for _ in range(REFUSED_SENDS)]
    deadline = asyncio.get_running_loop().time() + 60
    while sinks.state.attempts.get(bad_user["email"], 0) < REFUSED_SENDS:
        assert asyncio.get_running_loop().time() < deadline, sinks.state.attempts
        await asyncio.sleep(0.1)
    good = await asyncio.gather(*(tenant.send("email", user["id"], key) for user in healthy))

    for nid, user in zip(good, healthy, strict=True):
        final = await wait_for_status(tenant.client, nid, timeout=120)
        assert (final["status"], final["attempts"]) == ("sent", 1), final
        statuses = [event["status"] for event in await events(tenant.client, nid)]
        assert "retrying" not in statuses, statuses  # never deferred by an open circuit
        assert len(sinks.state.received("email", to=user["email"])) == 1

    max_attempts = stack.settings.max_attempts
    for nid in bad:
        final = await wait_for_status(tenant.client, nid, timeout=120)
        assert (final["status"], final["attempts"]) == ("failed", max_attempts), final
        assert "451" in final["last_error"]
        retries = [e for e in await events(tenant.client, nid) if e["status"] == "retrying"]
        # Every retry was a real provider call, none a deferral by an open circuit.
        assert [e["attempt"] for e in retries] == list(range(1, max_attempts)), retries
    assert sinks.state.attempts[bad_user["email"]] == REFUSED_SENDS * max_attempts
    assert sinks.state.received("email", to=bad_user["email"]) == []
    assert await _breaker_opened(stack, "smtp") == opened_before
