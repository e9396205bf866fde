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

        second_key = await new_tenant(stack, limited.name)  # same tenant, its own budget
        try:
            assert (await second_key.client.get("/v1/notifications")).status_code == 200
        finally:
            await second_key.client.aclose()
    finally:
        await limited.client.aclose()


async def test_the_budget_refills_at_the_steady_rate() -> None:
    limiter = RateLimiter("redis://127.0.0.1:6379/0")
    key = f"test-{uuid.uuid4().hex}"
    try:
        assert [await limiter.retry_after(key, 120) for _ in range(120)] == [None] * 120
        wait = await limiter.retry_after(key, 120)
        assert wait is not None and 0 < wait <= 0.5  # 120/min: one request every 0.5 s
        await asyncio.sleep(wait + 0.05)
        assert await limiter.retry_after(key, 120) is None
    finally:
        await limiter.close()


async def test_an_unreachable_store_fails_open_without_delay() -> None:
    limiter = RateLimiter(f"redis://127.0.0.1:{free_port()}/0")
    try:
        started = time.perf_counter()
        assert [await limiter.retry_after("k", 1) for _ in range(50)] == [None] * 50
        assert time.perf_counter() - started < 2.0  # the breaker stops paying the timeout
    finally:
        await limiter.close()
