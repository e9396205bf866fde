"""A circuit breaker: stop calling a dependency that keeps failing, probe it now and
then, and close again once it answers. Each provider of a channel has one (in the
channel workers), and so has the API's rate-limit store.

CLOSED → OPEN after ``failure_threshold`` consecutive failures that are the provider's
fault → HALF_OPEN once ``reset_seconds`` have passed (exactly one caller gets to probe)
→ CLOSED when the probe succeeds, OPEN again for another ``reset_seconds`` when it fails.

The state lives in the worker process. Every channel worker discovers an outage by
itself within ``failure_threshold`` failures, and the probes of ``n`` workers of one
channel are at most ``n`` per ``reset_seconds``; in exchange the breaker needs no
shared store on the send path, so it keeps working when that store does not.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from enum import IntEnum

from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)

BREAKER_STATE = Gauge(
    "herald_breaker_state",
    "Circuit breaker state per provider or store (0 closed, 1 half-open, 2 open)",
    ["breaker"],
)
BREAKER_TRANSITIONS = Counter(
    "herald_breaker_transitions_total",
    "Circuit breaker state changes per provider or store, by the state entered",
    ["breaker", "state"],
)


class BreakerState(IntEnum):
    """Where a breaker is; the value is what the gauge exports."""

    closed = 0
    half_open = 1
    open = 2


class CircuitBreaker:
    """The breaker of one provider (or store) in one process (not thread-safe: it belongs
    to one event loop)."""

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_seconds: float = 30.0,
        probe_wait_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failure_threshold = max(1, failure_threshold)
        self.reset_seconds = reset_seconds
        self.probe_wait_seconds = probe_wait_seconds
        self._clock = clock
        self._state = BreakerState.closed
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        BREAKER_STATE.labels(name).set(BreakerState.closed)

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker past its timeout reads as half-open)."""
        if self._state is BreakerState.open and self._clock() >= self._reopen_at:
            return BreakerState.half_open
        return self._state

    @property
    def _reopen_at(self) -> float:
        return self._opened_at + self.reset_seconds

    def allow(self) -> bool:
        """Whether a call may go to the provider now; the one half-open caller probes."""
        if self._state is BreakerState.closed:
            return True
        if self._state is BreakerState.open:
            if self._clock() < self._reopen_at:
                return False
            self._enter(BreakerState.half_open)
        if self._probing:
            return False
        self._probing = True
        return True

    @property
    def probing(self) -> bool:
        """Whether the call just let through is the half-open probe."""
        return self._probing

    def retry_in(self) -> float:
        """Seconds until a call could be let through again (with jitter, so the callers
        that were turned away do not all come back in the same instant)."""
        if self._state is BreakerState.open:
            wait = max(0.0, self._reopen_at - self._clock())
        elif self._state is BreakerState.half_open:
            wait = self.probe_wait_seconds
        else:
            wait = 0.0
        return wait + random.uniform(0.0, min(1.0, self.probe_wait_seconds))

    def record_success(self) -> None:
        """The provider did its job (a refusal for the recipient's own reasons counts too)."""
        self._failures = 0
        self._probing = False
        if self._state is not BreakerState.closed:
            self._enter(BreakerState.closed)

    def record_failure(self) -> None:
        """The provider failed in a way that is its own fault (5xx, timeout, refused)."""
        self._failures += 1
        was_probe = self._probing
        self._probing = False
        if was_probe or (
            self._state is BreakerState.closed and self._failures >= self.failure_threshold
        ):
            self._opened_at = self._clock()
            self._enter(BreakerState.open)

    def release(self) -> None:
        """A call that was let through ended without a verdict (e.g. it was cancelled)."""
        self._probing = False

    def _enter(self, state: BreakerState) -> None:
        previous, self._state = self._state, state
        BREAKER_STATE.labels(self.name).set(state)
        BREAKER_TRANSITIONS.labels(self.name, state.name).inc()
        log.warning(
            "circuit breaker %s: %s → %s",
            self.name,
            previous.name,
            state.name,
            extra={
                "breaker": self.name,
                "breaker_from": previous.name,
                "breaker_to": state.name,
                "consecutive_failures": self._failures,
                "retry_in_seconds": round(self.reset_seconds, 3)
                if state is BreakerState.open
                else None,
            },
        )
