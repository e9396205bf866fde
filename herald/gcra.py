"""A rate shared by every process through Redis: GCRA, the generic cell rate algorithm.

One Redis key per limited thing holds its "theoretical arrival time", updated by one
atomic Lua script that reads Redis's own clock, so processes with skewed clocks still
agree. A turn is taken only when it is allowed; one refused costs nothing. Used for the
API's request budgets, one per tenant with a limit of its own and otherwise one per API
key (``api/ratelimit.py``), and for a channel's sending rate
(``activities/providers/sendrate.py``). Redis errors are raised: each caller decides
what an unreachable store means for it.
"""

from __future__ import annotations

from redis.asyncio import Redis

_SCRIPT = """
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
# Redis answers in well under a millisecond; anything slower is treated as down.
REDIS_TIMEOUT = 0.25


class Gcra:
    """Turns at a steady rate with a burst allowance, counted in Redis."""

    def __init__(self, redis_url: str, timeout: float = REDIS_TIMEOUT) -> None:
        self._redis = Redis.from_url(
            redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._script = self._redis.register_script(_SCRIPT)

    async def wait(self, key: str, per_second: float, burst: float) -> float:
        """Take a turn of ``key`` if one is free now (0.0), else the seconds until one is
        (nothing taken). Raises ``RedisError``/``OSError`` when Redis does not answer."""
        allowed, wait_ms = await self._script(keys=[key], args=[1000 / per_second, burst])
        return 0.0 if allowed else max(int(wait_ms), 1) / 1000

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()
