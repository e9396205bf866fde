"""How many times one send has really called a provider, as opposed to being deferred
by an open circuit breaker, carried from one Temporal attempt to the next in the
activity's heartbeat details.

Temporal counts every attempt, deferrals included; Herald's retry budget
(``max_attempts``) counts only provider calls, so an outage shorter than the deferral
budget never fails a notification, however many times it was deferred.

Every Temporal attempt counts as a provider call unless it was recorded as one that
made none, so only a deferral is written down (one heartbeat, on a path that called no
provider). A send that goes straight to the provider costs no heartbeat, and an attempt
that crashed mid-call still counts.
"""

from __future__ import annotations

import contextvars
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

_current: contextvars.ContextVar[AttemptLedger | None] = contextvars.ContextVar(
    "herald_attempt_ledger", default=None
)


class SendProgress(BaseModel):
    """What earlier Temporal attempts of this send left behind."""

    # Attempts deferred by an open breaker (the deferral budget counts these) ...
    deferrals: int = 0
    # ... and, of all earlier attempts, those that made no provider call that counts.
    uncounted: int = 0


class AttemptLedger:
    """The progress of the send running in this activity task."""

    def __init__(
        self, progress: SendProgress, *, temporal_attempt: int = 1, heartbeat: bool = False
    ) -> None:
        self.progress = progress
        self.spent = False
        self._heartbeat = heartbeat
        self.provider_attempts = max(temporal_attempt - 1 - progress.uncounted, 0)

    @classmethod
    def resume(cls) -> AttemptLedger:
        """The progress the previous attempts left, bound to the running activity task
        (a local activity runs once and keeps no heartbeat)."""
        if not activity.in_activity():
            ledger = cls(SendProgress())
        else:
            info = activity.info()
            details = info.heartbeat_details
            progress = SendProgress()
            if details and isinstance(details[0], dict):
                progress = SendProgress.model_validate(details[0])
            ledger = cls(progress, temporal_attempt=info.attempt, heartbeat=not info.is_local)
        _current.set(ledger)
        return ledger

    @property
    def attempt(self) -> int:
        """The provider attempt this is (or would be, if the provider is called)."""
        return self.provider_attempts + 1

    def spend(self) -> None:
        """Count a provider call for this attempt (nothing to save: an attempt that is not
        deferred counts anyway, even if the worker dies mid-call)."""
        self.spent = True

    def refund(self) -> None:
        """Take back the provider call just counted: it was the breaker's probe, and a
        failed probe is the breaker's cost, not this send's."""
        self.spent = False

    def defer(self, retry_in: float, message: str, max_deferrals: int) -> ApplicationError:
        """The error that tells Temporal to come back in ``retry_in`` seconds, or, once the
        deferral budget is used up, that the provider stayed unavailable for too long."""
        self.progress.deferrals += 1
        if not self.spent:
            self.progress.uncounted += 1
        self._save()
        exhausted = self.progress.deferrals > max_deferrals
        return ApplicationError(
            f"{message}; deferred {self.progress.deferrals} times"
            if exhausted
            else f"{message}; trying again in {retry_in:.1f}s",
            {
                "attempt": self.provider_attempts + (1 if self.spent else 0),
                "deferrals": self.progress.deferrals,
                "retry_in": retry_in,
                "at": datetime.now(UTC).isoformat(),
            },
            type="ProviderUnavailable",
            non_retryable=exhausted,
            next_retry_delay=None if exhausted else timedelta(seconds=retry_in),
        )

    def _save(self) -> None:
        if self._heartbeat:
            activity.heartbeat(self.progress.model_dump())


def spend_attempt() -> None:
    """Count a provider call for the send running in this task (no-op outside one)."""
    ledger = _current.get()
    if ledger is not None:
        ledger.spend()


def refund_attempt() -> None:
    """Take back the provider call counted for the send running in this task."""
    ledger = _current.get()
    if ledger is not None:
        ledger.refund()
