"""The circuit breaker's state machine, on a clock the test moves."""

from __future__ import annotations

import pytest

from herald.breaker import BreakerState, CircuitBreaker

pytestmark = pytest.mark.fast


class Clock:
    """A monotonic clock that only moves when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_threshold_probes_once_per_timeout_and_closes_on_success() -> None:
    clock = Clock()
    breaker = CircuitBreaker("p", failure_threshold=3, reset_seconds=30, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is BreakerState.closed
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.open
    assert not breaker.allow()
    assert 29 <= breaker.retry_in() <= 31

    clock.now += 29.9
    assert not breaker.allow()
    clock.now += 0.2
    assert breaker.allow()  # the one probe
    assert breaker.probing
    assert not breaker.allow()  # nobody else while it runs
    breaker.record_failure()  # the probe failed: open for another period
    assert breaker.state is BreakerState.open
    clock.now += 15
    assert not breaker.allow()
    clock.now += 15.1
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.closed
    assert breaker.allow() and breaker.allow()


def test_a_success_resets_the_consecutive_failure_count() -> None:
    breaker = CircuitBreaker("q", failure_threshold=2, reset_seconds=5, clock=Clock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state is BreakerState.closed


def test_a_cancelled_probe_lets_the_next_caller_probe() -> None:
    clock = Clock()
    breaker = CircuitBreaker("r", failure_threshold=1, reset_seconds=5, clock=clock)
    breaker.record_failure()
    clock.now += 5
    assert breaker.allow()
    breaker.release()
    assert breaker.allow()
