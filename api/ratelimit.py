"""The REST rate limit, shared by every API instance through Redis.

A request spends from one budget of requests per minute that refills continuously
(``herald/gcra.py``: one Redis key per budget). Whose budget depends on the tenant: a
tenant given a limit of its own (``herald tenant limit``) has one budget for all its
keys, so more keys do not buy more requests; any other tenant's keys each have the
deployment's default (``HERALD_RATE_LIMIT_PER_MINUTE``), and the cap on live keys
(``HERALD_MAX_API_KEYS``) bounds what they add up to. The console spends from the same
budget as the key it was signed in with. A request over the budget is answered ``429``
with ``Retry-After``.

Redis is the store because the limit must hold across API instances (a per-process
counter would multiply the limit by the number of instances), the check is one round
trip on the hot path, and the state is disposable: losing it only forgets recent usage.
When Redis is unreachable the limiter fails open: requests are served unlimited and a
warning is logged, because refusing every notification over a lost counter would turn a
cache outage into a platform outage, while the database and Temporal still bound the
work. A circuit breaker keeps a dead Redis from adding its timeout to every request.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from fastapi import Request
from redis.exceptions import RedisError

from herald.breaker import CircuitBreaker
from herald.gcra import Gcra
from herald.tenants import TenantContext

log = logging.getLogger(__name__)

_KEY_PREFIX = "herald:ratelimit:"


@dataclass(frozen=True)
class Budget:
    """Requests that share one limit: all of a tenant's, or one API key's."""

    key: str
    per_minute: int
    # Who the budget belongs to, as a refusal names it.
    holder: str


def budget_for(tenant: TenantContext, key_digest: str, default_per_minute: int) -> Budget:
    """The budget a request of ``tenant`` with the key hashed to ``key_digest`` spends."""
    if tenant.rate_limit_per_minute is not None:
        return Budget(f"tenant:{tenant.id}", tenant.rate_limit_per_minute, "tenant")
    # The bare digest is the key the per-key budgets have always had in Redis.
    return Budget(key_digest, default_per_minute, "API key")


class RateLimiter:
    """Checks and counts one request per call; one instance per API process."""

    def __init__(self, redis_url: str) -> None:
        self._gcra = Gcra(redis_url)
        self._breaker = CircuitBreaker(
            "redis-ratelimit", failure_threshold=3, reset_seconds=5.0, probe_wait_seconds=1.0
        )

    async def retry_after(self, key: str, per_minute: int) -> float | None:
        """None if the request may proceed, else the seconds until it would be allowed."""
        if not self._breaker.allow():
            return None
        try:
            wait = await self._gcra.wait(_KEY_PREFIX + key, per_minute / 60, per_minute)
        except (RedisError, OSError) as err:
            self._breaker.record_failure()
            log.warning("rate limit store unavailable; not limiting: %s", err)
            return None
        self._breaker.record_success()
        return wait or None

    async def close(self) -> None:
        """Close the connection pool."""
        await self._gcra.close()


async def over_budget(
    request: Request, tenant: TenantContext, key_digest: str
) -> tuple[Budget, float] | None:
    """Spend one request of the caller's budget: None if it may proceed, else the budget
    it is over and the seconds until it would be allowed."""
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is None:
        return None
    default = request.app.state.backends.settings.rate_limit_per_minute
    budget = budget_for(tenant, key_digest, default)
    wait = await limiter.retry_after(budget.key, budget.per_minute)
    return None if wait is None else (budget, wait)


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` in whole seconds, never 0."""
    return str(max(1, math.ceil(seconds)))
