"""The retry policy every outage is waited out with: growing, jittered, capped delays, and
a stop that ends the wait at once."""

from __future__ import annotations

import asyncio

import pytest
from tenacity import RetryCallState

from herald.backoff import Stopped, jittered_delays, retry


class Unavailable(Exception):
    """A service that is down (what the policy retries)."""


class Broken(Exception):
    """A failure no retry can fix."""


def _delay(initial: float, maximum: float, attempt: int) -> float:
    """The wait the policy picks after failed attempt number ``attempt``."""
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    return float(jittered_delays(initial, maximum)(state))


def test_delays_double_within_their_jitter_until_the_cap() -> None:
    for attempt in range(1, 7):
        base = 0.5 * 2 ** (attempt - 1)
        samples = [_delay(0.5, 30.0, attempt) for _ in range(200)]
        assert all(base / 2 <= delay <= base for delay in samples)
    # Each attempt's range starts where the previous one's ends: every sequence grows.
    for _ in range(200):
        delays = [_delay(0.5, 30.0, attempt) for attempt in range(1, 7)]
        assert delays == sorted(delays)


def test_delays_never_exceed_the_maximum_and_stay_spread_out_at_it() -> None:
    samples = [_delay(0.5, 30.0, attempt) for attempt in (20, 50, 5000) for _ in range(100)]
    assert all(15.0 <= delay <= 30.0 for delay in samples)
    # Held messages that all reached the cap still do not retry in lockstep.
    assert len({round(delay, 3) for delay in samples}) > 100


def test_messages_failing_together_retry_at_different_times() -> None:
    first_waits = {_delay(1.0, 30.0, 1) for _ in range(50)}
    assert len(first_waits) > 40


async def test_retries_until_the_call_succeeds_reporting_each_wait() -> None:
    failures = iter([Unavailable("down"), Unavailable("still down")])
    heard: list[tuple[str, float]] = []

    async def call() -> str:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return "connected"

    result = await retry(
        call,
        initial=0.01,
        maximum=0.04,
        when=lambda err: isinstance(err, Unavailable),
        on_retry=lambda err, delay: heard.append((str(err), delay)),
    )

    assert result == "connected"
    assert [error for error, _ in heard] == ["down", "still down"]
    assert 0.005 <= heard[0][1] <= 0.01
    assert 0.01 <= heard[1][1] <= 0.02


async def test_a_failure_the_policy_does_not_accept_is_raised_at_once() -> None:
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        raise Broken("bad configuration")

    with pytest.raises(Broken):
        await retry(
            call,
            initial=60.0,
            maximum=60.0,
            when=lambda err: isinstance(err, Unavailable),
            on_retry=lambda err, delay: None,
        )
    assert calls == 1


async def test_stopping_ends_a_long_wait_promptly() -> None:
    stop = asyncio.Event()
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        raise Unavailable("down")

    def on_retry(err: BaseException, delay: float) -> None:
        # The first wait is at least half an hour; stop while it has only just begun.
        asyncio.get_running_loop().call_later(0.05, stop.set)

    # Without the stop the wait would outlast the timeout and raise TimeoutError instead.
    with pytest.raises(Stopped):
        await asyncio.wait_for(
            retry(
                call,
                initial=3600.0,
                maximum=3600.0,
                when=lambda err: isinstance(err, Unavailable),
                on_retry=on_retry,
                stop=stop,
            ),
            timeout=60,
        )
    assert calls == 1  # no further attempt once stopped


async def test_an_already_stopped_process_makes_no_attempt() -> None:
    stop = asyncio.Event()
    stop.set()
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1

    with pytest.raises(Stopped):
        await retry(
            call,
            initial=1.0,
            maximum=1.0,
            when=lambda err: True,
            on_retry=lambda err, delay: None,
            stop=stop,
        )
    assert calls == 0
