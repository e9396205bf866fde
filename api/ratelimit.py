"""The REST rate limit per API key, shared by every API instance through Redis.

Each key has a budget of ``limit`` requests per minute that refills continuously
(GCRA, the generic cell rate algorithm: one Redis key per API key holding the
"theoretical arrival time", updated by one atomic Lua script that reads Redis's own
clock, so API instances with skewed clocks still agree). A request over the budget is
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

from redis.asyncio import Redis
from redis.exceptions import RedisError

from herald.breaker import CircuitBreaker

log = logging.getLogger(__name__)

_GCRA = """
local emission = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + emission
local allow_at = new_tat - burst * emission
if allow_at > now then
  return {0, math.ceil(allow_at - now)}
end
redis.call('SET', KEYS[1], string.format('%d', math.ceil(new_tat)), 'PX', math.ceil(new_tat - now))
return {1, 0}
"""
_KEY_PREFIX = "herald:ratelimit:"
# Redis answers in well under a millisecond; anything slower is treated as down.
_REDIS_TIMEOUT = 0.25


class RateLimiter:
    """Checks and counts one request per call; one instance per API process."""

    def __init__(self, redis_url: str) -> None:
        self._redis = Redis.from_url(
            redis_url, socket_timeout=_REDIS_TIMEOUT, socket_connect_timeout=_REDIS_TIMEOUT
        )
        self._script = self._redis.register_script(_GCRA)
        self._breaker = CircuitBreaker(
            "redis-ratelimit", failure_threshold=3, reset_seconds=5.0, probe_wait_seconds=1.0
        )

    async def retry_after(self, key_digest: str, per_minute: int) -> float | None:
        """None if the request may proceed, else the seconds until it would be allowed."""
        if not self._breaker.allow():
            return None
        try:
            allowed, wait_ms = await self._script(
                keys=[_KEY_PREFIX + key_digest], args=[60_000 / per_minute, per_minute]
            )
        except (RedisError, OSError) as err:
            self._breaker.record_failure()
            log.warning("rate limit store unavailable; not limiting: %s", err)
            return None
        self._breaker.record_success()
        return None if allowed else max(int(wait_ms), 1) / 1000

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` in whole seconds, never 0."""
    return str(max(1, math.ceil(seconds)))
