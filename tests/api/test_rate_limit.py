"""The REST rate limit per API key: 429 with Retry-After, per-tenant limits, other keys
and tenants untouched, and the Redis store failing open."""

from __future__ import annotations

import asyncio
import time
import uuid

from api.ratelimit import RateLimiter
from herald.ports import free_port
from tests.harness import Stack, Tenant, new_tenant


async def test_a_key_over_its_tenants_limit_gets_429_and_others_do_not(
    stack: Stack, other_tenant: Tenant
) -> None:
    limited = await new_tenant(stack, f"limited-{uuid.uuid4().hex[:8]}", rate_limit_per_minute=5)
    try:
        answers = [(await limited.client.get("/v1/notifications")).status_code for _ in range(5)]
        assert answers == [200] * 5
        refused = await limited.client.get("/v1/notifications")
        assert refused.status_code == 429, refused.text
        retry_after = int(refused.headers["Retry-After"])
        assert 1 <= retry_after <= 12  # one request's worth of a 5/min budget
        assert refused.headers["X-RateLimit-Limit"] == "5"
        assert "rate limit" in refused.json()["detail"]
        print(f"5/min key: {answers} then 429 with Retry-After {retry_after}s")

        for _ in range(10):  # another tenant on the default limit is unaffected
            assert (await other_tenant.client.get("/v1/notifications")).status_code == 200

        # Same tenant: the tenant's budget, whichever of its keys asks.
        second_key = await new_tenant(stack, limited.name)
        try:
            assert (await second_key.client.get("/v1/notifications")).status_code == 429
        finally:
            await second_key.client.aclose()
    finally:
        await limited.client.aclose()


async def test_the_budget_refills_at_the_steady_rate() -> None:
    limiter = RateLimiter("redis://127.0.0.1:6379/0")
    key = f"test-{uuid.uuid4().hex}"
    try:
        # The full budget at once, plus whatever refilled (one every 0.5 s) while it was
        # being spent: a slow machine spends it more slowly, so count, do not assume.
        started = time.monotonic()
        allowed, wait = 0, None
        while allowed < 1000 and (wait := await limiter.retry_after(key, 120)) is None:
            allowed += 1
        refilled = (time.monotonic() - started) / 0.5
        assert 120 <= allowed <= 120 + refilled + 1, allowed
        assert wait is not None and 0 < wait <= 0.5  # 120/min: one request every 0.5 s
        await asyncio.sleep(wait + 0.05)
        assert await limiter.retry_after(key, 120) is None
    finally:
        await limiter.close()


# The limiter's breaker on the store: open after 3 failures, one probe per 5 s.
STORE_BREAKER_THRESHOLD = 3
STORE_BREAKER_RESET = 5.0


async def test_a_store_that_stopped_answering_fails_open_and_stops_being_asked() -> None:
    """A Redis that accepts connections and never answers costs each request its timeout,
    until the breaker opens: from then on requests do not reach it (but one probe per
    reset period)."""
    reached = 0

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal reached
        reached += 1
        await reader.read()  # until the client gives up and closes
        writer.close()

    dead = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = dead.sockets[0].getsockname()[1]
    limiter = RateLimiter(f"redis://127.0.0.1:{port}/0")
    try:
        started = time.monotonic()
        assert [await limiter.retry_after("k", 1) for _ in range(50)] == [None] * 50
        # However slow the machine, the breaker probes at most once per reset period.
        probes = 1 + int((time.monotonic() - started) / STORE_BREAKER_RESET)
        assert reached <= STORE_BREAKER_THRESHOLD + probes, reached
    finally:
        await limiter.close()
        dead.close()


async def test_an_unreachable_store_fails_open() -> None:
    limiter = RateLimiter(f"redis://127.0.0.1:{free_port()}/0")
    try:
        assert [await limiter.retry_after("k", 1) for _ in range(5)] == [None] * 5
    finally:
        await limiter.close()
