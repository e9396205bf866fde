"""The REST rate limit per API key, shared by every API instance through Redis.

Each key has a budget of ``limit`` requests per minute that refills continuously
(``herald/gcra.py``: one Redis key per API key). A request over the budget is
answered ``429`` with ``Retry-After``.

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

from redis.exceptions import RedisError

from herald.breaker import CircuitBreaker
from herald.gcra import Gcra

log = logging.getLogger(__name__)

_KEY_PREFIX = "herald:ratelimit:"


class RateLimiter:
    """Checks and counts one request per call; one instance per API process."""

    def __init__(self, redis_url: str) -> None:
        self._gcra = Gcra(redis_url)
        self._breaker = CircuitBreaker(
            "redis-ratelimit", failure_threshold=3, reset_seconds=5.0, probe_wait_seconds=1.0
        )

    async def retry_after(self, key_digest: str, per_minute: int) -> float | None:
        """None if the request may proceed, else the seconds until it would be allowed."""
        if not self._breaker.allow():
            return None
        try:
            wait = await self._gcra.wait(_KEY_PREFIX + key_digest, per_minute / 60, per_minute)
        except (RedisError, OSError) as err:
            self._breaker.record_failure()
            log.warning("rate limit store unavailable; not limiting: %s", err)
            return None
        self._breaker.record_success()
        return wait or None

    async def close(self) -> None:
        """Close the connection pool."""
        await self._gcra.close()


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` in whole seconds, never 0."""
    return str(max(1, math.ceil(seconds)))
