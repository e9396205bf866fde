"""A channel's sending rate limit (``HERALD_<CHANNEL>_RATE_PER_SECOND``), held across all
of the channel's workers.

Temporal's task-queue rate limit paces the regular send activity, but the first attempt
of a notification is a local activity, which no task queue sees. Both therefore take
their turn from one GCRA limiter in Redis (``herald/gcra.py``), with a burst of one
second's worth, like Temporal's:

- the first attempt takes a turn only if one is free now; if not, or if Redis does not
  answer, it does not wait: the send goes on as the regular activity, which waits;
- the regular activity waits for its turn; if Redis does not answer it goes ahead, and
  Temporal's task-queue limit (set to the same rate) still bounds it.

So the limit holds whichever way a send goes, and an unreachable Redis only moves sends
onto the path Temporal paces.
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from herald.gcra import Gcra

log = logging.getLogger(__name__)
# A wait is slept in steps this long at most, so an activity keeps close to its turn.
_MAX_SLEEP = 1.0


class SendRate:
    """The turns of one channel's sends."""

    def __init__(self, gcra: Gcra, key: str, per_second: float) -> None:
        self._gcra = gcra
        self._key = key
        self.per_second = per_second
        self._burst = max(per_second, 1.0)

    async def turn_now(self) -> float | None:
        """Take a turn if one is free now (None), else the seconds to wait (0.0 when the
        store does not answer: go the paced way at once)."""
        try:
            wait = await self._gcra.wait(self._key, self.per_second, self._burst)
        except (RedisError, OSError) as err:
            log.warning("sending rate store unavailable: %s", err)
            return 0.0
        return wait or None

    async def take(self) -> None:
        """Wait for a turn (go ahead at once if the store does not answer)."""
        while True:
            try:
                wait = await self._gcra.wait(self._key, self.per_second, self._burst)
            except (RedisError, OSError) as err:
                log.warning("sending rate store unavailable; Temporal paces this send: %s", err)
                return
            if not wait:
                return
            await asyncio.sleep(min(wait, _MAX_SLEEP))

    async def close(self) -> None:
        """Close the store's connections."""
        await self._gcra.close()
