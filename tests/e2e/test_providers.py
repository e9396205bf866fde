"""Provider resilience end to end: failover to a second provider, the circuit breaker
through a 30 s outage, and the per-channel sending rate limit.

These run on a Herald of their own (API and workers on their own task queues, the
session's Temporal and database) whose email and SMS have a primary and a secondary
provider, each on its own sink, so one can fail while the other works.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from devtools.devserver import TemporalDevServer
from devtools.sinks import Rule, Sinks
from herald.ports import free_port
from herald.settings import Settings
from tests.harness import (
    Stack,
    Tenant,
    events,
    new_tenant,
    wait_for_status,
    worker_log_events,
)
from tests.harness import test_settings as settings_for_run

BREAKER_THRESHOLD = 3
BREAKER_RESET = 5.0
EMAIL_RATE = 2.0
# Temporal's task-queue rate limit lets one second's worth of the rate go at once (its
# burst duration; the dev server has one partition per queue), and matching's GCRA lets
# a task go the moment the queue is no longer ahead of its schedule: one more.
EMAIL_BURST = math.ceil(EMAIL_RATE * 1.0) + 1
# How far apart the sink may see two sends that Temporal dispatched together: each send's
# own latency (worker scheduling, SMTP conversation) on a loaded two-core machine.
SEND_JITTER = 1.0


@pytest.fixture(scope="module")
def primary() -> Iterator[Sinks]:
    """The primary SMTP relay and Twilio/FCM endpoint."""
    running = Sinks(smtp_port=free_port(), http_port=free_port()).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def secondary() -> Iterator[Sinks]:
    """The secondary SMTP relay and SMS account."""
    running = Sinks(smtp_port=free_port(), http_port=free_port()).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def resilient(
    settings: Settings,
    temporal_server: TemporalDevServer,
    primary: Sinks,
    secondary: Sinks,
    run_dir: Path,
) -> Iterator[Stack]:
    """API and workers with two providers for email and SMS, one for push."""
    own: Settings = settings_for_run(
        f"prov{uuid.uuid4().hex[:6]}",
        temporal_server.address,
        primary,
        database_url=settings.database_url,
        smtp_secondary_port=secondary.smtp_port,
        sms_secondary_api_url=secondary.http_url,
        sms_secondary_account_sid="ACsecondary",
        breaker_failure_threshold=BREAKER_THRESHOLD,
        breaker_reset_seconds=BREAKER_RESET,
        email_rate_per_second=EMAIL_RATE,
    )
    running = Stack(own, run_dir / "logs-providers").start()
    yield running
    running.stop()


@pytest.fixture
async def client(resilient: Stack) -> AsyncIterator[Tenant]:
    """A tenant on the resilient stack."""
    made = await new_tenant(resilient, f"prov-{uuid.uuid4().hex[:8]}")
    yield made
    await made.client.aclose()


@pytest.fixture(autouse=True)
def _reset_sinks(primary: Sinks, secondary: Sinks) -> None:
    primary.state.rules.clear()
    secondary.state.rules.clear()


async def test_sms_fails_over_when_the_primary_account_is_refused(
    client: Tenant, primary: Sinks, secondary: Sinks
) -> None:
    user = await client.user()
    primary.state.add_rule(Rule(match=user["phone"], always=401))
    key = await client.template("sms", "Code {{ code }}", None)

    nid = await client.send("sms", user["id"], key, {"code": "42"})

    final = await wait_for_status(client.client, nid, timeout=30)
    assert (final["status"], final["provider"], final["attempts"]) == (
        "sent",
        "twilio-secondary",
        1,
    )
    assert primary.state.attempts[user["phone"]] == 1
    assert primary.state.received("sms", to=user["phone"]) == []
    (sms,) = secondary.state.received("sms", to=user["phone"])
    assert sms.body == "Code 42" and sms.idempotency_key == nid
    sent = [e for e in await events(client.client, nid) if e["status"] == "sent"]
    assert sent[0]["provider"] == "twilio-secondary"
    assert sent[0]["detail"] == "sent on sms by twilio-secondary"


async def test_email_moves_to_the_secondary_relay_once_the_primary_breaker_opens(
    client: Tenant, primary: Sinks, secondary: Sinks
) -> None:
    users = [await client.user() for _ in range(BREAKER_THRESHOLD)]
    outage = primary.state.add_rule(Rule(match="@example.com", always="421 4.3.2 down"))
    key = await client.template("email", "<p>Hi</p>", "Hi")

    ids = [await client.send("email", user["id"], key) for user in users]

    for nid, user in zip(ids, users, strict=True):
        final = await wait_for_status(client.client, nid, timeout=60)
        assert (final["status"], final["provider"]) == ("sent", "smtp-secondary"), final
        assert len(secondary.state.received("email", to=user["email"])) == 1
    primary.state.rules.remove(outage)

    # Once the primary answers again, a probe closes its breaker and it takes over.
    await asyncio.sleep(BREAKER_RESET + 0.5)
    later = await client.user()
    nid = await client.send("email", later["id"], key)
    final = await wait_for_status(client.client, nid, timeout=30)
    assert (final["status"], final["provider"]) == ("sent", "smtp")


async def test_breaker_rides_out_a_30s_outage_probing_once_per_timeout(
    client: Tenant, primary: Sinks, resilient: Stack
) -> None:
    """Push has one provider: while it is down, sends wait on its breaker."""
    users = [await client.user() for _ in range(8)]
    tokens = [await client.device(user["id"]) for user in users]
    key = await client.template("push", "Hi", "Title")
    log = resilient.processes["worker-push"].log_path
    already = len(worker_log_events(log, "circuit breaker fcm"))

    outage = primary.state.add_rule(Rule(match="tok-", always=503))
    down_at = time.time()
    ids = [await client.send("push", user["id"], key) for user in users]
    await asyncio.sleep(30 - (time.time() - down_at))
    attempts_during_outage = sum(primary.state.attempts.get(token, 0) for token in tokens)
    primary.state.rules.remove(outage)
    up_at = time.time()

    finals = [await wait_for_status(client.client, nid, timeout=60) for nid in ids]
    assert [f["status"] for f in finals] == ["sent"] * len(ids), finals
    for token in tokens:
        assert len(primary.state.received("push", to=token)) == 1

    transitions = [
        (
            datetime.strptime(e["time"], "%Y-%m-%d %H:%M:%S,%f").timestamp(),
            e.get("breaker_to"),
        )
        for e in worker_log_events(log, "circuit breaker fcm")[already:]
    ]
    opened = [at for at, state in transitions if state == "open"]
    probes = [at for at, state in transitions if state == "half_open" and at < up_at]
    assert opened and opened[0] < up_at, "the breaker never opened during the outage"
    # Calls that reached the dead provider before the breaker opened: the threshold's
    # worth, plus the sends already under way when it did (counted by the provider).
    calls_until_open = sum(
        1 for r in primary.state.requests if r.to in tokens and r.at <= opened[0]
    )
    print(
        f"breaker: opened after {calls_until_open} provider calls, "
        f"{len(probes)} probes in {up_at - down_at:.0f}s, "
        f"{attempts_during_outage} provider calls during the outage, "
        f"recovered {max(f['updated_at'] for f in finals)}"
    )
    assert calls_until_open <= BREAKER_THRESHOLD + len(ids)
    # At most one probe per reset period while open (plus the one that found it back);
    # a slower machine only makes fewer.
    assert len(probes) <= (up_at - down_at) / BREAKER_RESET + 1
    # The calls that opened it, then probes only: no hammering.
    assert attempts_during_outage <= BREAKER_THRESHOLD + len(ids) + len(probes)
    assert transitions[-1][1] == "closed"


def busiest(times: list[float], window: float) -> int:
    """The most of ``times`` that fall within any ``window`` seconds (ends included)."""
    ordered = sorted(times)
    return max(
        sum(1 for later in ordered[i:] if later - start <= window)
        for i, start in enumerate(ordered)
    )


async def test_email_sending_rate_is_limited_across_the_channel(
    client: Tenant, primary: Sinks
) -> None:
    """Emails the sink received, by its own clock: however they are spread, no stretch of
    time holds more than the rate allows plus Temporal's burst (and the sends' jitter).
    Without the limit, all of them would land within a second or two."""
    users = [await client.user() for _ in range(12)]
    key = await client.template("email", "<p>Hi</p>", "Hi")
    ids = [await client.send("email", user["id"], key) for user in users]
    for nid in ids:
        assert (await wait_for_status(client.client, nid, timeout=120))["status"] == "sent"
    times = [m.at for user in users for m in primary.state.received("email", to=user["email"])]
    assert len(times) == len(users)

    spread = max(times) - min(times)
    print(f"{len(times)} emails at {EMAIL_RATE}/s over {spread:.2f}s")
    for window in (1.0, 2.0, 4.0, spread):
        allowed = EMAIL_BURST + EMAIL_RATE * (window + SEND_JITTER)
        assert busiest(times, window) <= allowed, (window, sorted(times))
