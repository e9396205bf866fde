"""Waiting out an outage: one retry policy for every process that must wait for a service.

Workers and the bridge wait for Temporal at start-up, the bridge waits for RabbitMQ, and
every message the bridge holds during an outage retries its workflow start. They all
back off exponentially up to a cap, with jitter: the delay before attempt n+1 lies
between half of ``min(initial * 2**(n-1), maximum)`` and all of it ("equal jitter"), so
the delays still grow steadily while the hundreds of messages held through one outage
spread their retries out instead of all hitting the recovering service at the same
instant.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception,
    wait_exponential,
    wait_random_exponential,
)
from tenacity.wait import wait_base

T = TypeVar("T")


class Stopped(Exception):
    """The process was asked to stop before the call succeeded."""


def jittered_delays(initial: float, maximum: float) -> wait_base:
    """The wait before each retry: a fixed half that doubles up to ``maximum / 2``, plus a
    random part of the same size."""
    half, cap = initial / 2, maximum / 2
    return wait_exponential(multiplier=half, max=cap) + wait_random_exponential(
        multiplier=half, max=cap
    )


def _sleeper(stop: asyncio.Event | None) -> Callable[[float], Awaitable[None]]:
    """Sleeps the given time, or raises ``Stopped`` as soon as ``stop`` is set."""

    async def sleep(seconds: float) -> None:
        if stop is None:
            await asyncio.sleep(seconds)
            return
        try:
            await asyncio.wait_for(stop.wait(), seconds)
        except TimeoutError:
            return
        raise Stopped

    return sleep


async def retry(
    attempt: Callable[[], Awaitable[T]],
    *,
    initial: float,
    maximum: float,
    when: Callable[[BaseException], bool],
    on_retry: Callable[[BaseException, float], None],
    stop: asyncio.Event | None = None,
) -> T:
    """``attempt()``'s result, calling it again after each failure ``when`` accepts.

    ``on_retry`` hears each such failure with the delay before the next attempt (for the
    log). Any other failure is raised as it is. Raises ``Stopped`` if ``stop`` is set
    before an attempt succeeds (without an attempt if it already is); a wait between
    attempts ends as soon as it is.
    """

    def report(state: RetryCallState) -> None:
        assert state.outcome is not None and state.next_action is not None
        error = state.outcome.exception()
        assert error is not None
        on_retry(error, round(state.next_action.sleep, 3))  # milliseconds are plenty

    if stop is not None and stop.is_set():
        raise Stopped
    policy = AsyncRetrying(
        wait=jittered_delays(initial, maximum),
        retry=retry_if_exception(when),
        stop=lambda _: stop is not None and stop.is_set(),
        before_sleep=report,
        sleep=_sleeper(stop),
    )
    try:
        result: T = await policy(attempt)
    except RetryError as err:
        raise Stopped from err.last_attempt.exception()
    return result
