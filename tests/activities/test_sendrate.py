"""The channel's sending rate as the send step sees it, on the real Redis: a burst of
one second's worth, then the first attempt is told how long to wait (and hands the send
to the regular activity), while the regular activity waits for its turn. With Redis
unreachable, the first attempt always hands over (Temporal's task-queue limit then holds
the rate) and the regular activity goes ahead."""

from __future__ import annotations

import time
import uuid

from activities.providers.sendrate import SendRate
from herald.gcra import Gcra
from herald.ports import free_port

REDIS = "redis://127.0.0.1:6379/0"


async def test_a_burst_of_one_seconds_worth_then_a_wait() -> None:
    rate = SendRate(Gcra(REDIS), f"herald:test:sendrate:{uuid.uuid4().hex}", per_second=5)
    try:
        turns = [await rate.turn_now() for _ in range(5)]
        refused = await rate.turn_now()
        started = time.monotonic()
        await rate.take()
        waited = time.monotonic() - started
    finally:
        await rate.close()

    assert turns == [None] * 5
    assert refused is not None and 0 < refused <= 0.2
    # The regular activity's turn came once the rate allowed it, not at once.
    assert waited >= refused * 0.5


async def test_an_unreachable_store_hands_first_attempts_to_the_paced_path() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    rate = SendRate(Gcra(dead), "herald:test:sendrate:dead", per_second=5)
    try:
        handed_over = await rate.turn_now()
        await rate.take()  # returns: Temporal's task-queue limit paces it
    finally:
        await rate.close()

    assert handed_over == 0.0
