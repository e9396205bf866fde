"""How many times one send has really called a provider, as opposed to being deferred
by an open circuit breaker, carried from one Temporal attempt to the next in the
activity's heartbeat details.

Temporal counts every attempt, deferrals included; Herald's retry budget
(``max_attempts``) counts only provider calls, so an outage shorter than the deferral
budget never fails a notification, however many times it was deferred.
"""

from __future__ import annotations

import contextvars
from datetime import timedelta

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

_current: contextvars.ContextVar[AttemptLedger | None] = contextvars.ContextVar(
    "herald_attempt_ledger", default=None
)


class SendProgress(BaseModel):
    """What earlier Temporal attempts of this send did."""

    provider_attempts: int = 0
    deferrals: int = 0


class AttemptLedger:
    """The progress of the send running in this activity task."""

    def __init__(self, progress: SendProgress, *, heartbeat: bool) -> None:
        self.progress = progress
        self.spent = False
        self._heartbeat = heartbeat

    @classmethod
    def resume(cls) -> AttemptLedger:
        """The progress the previous attempt left, bound to the running activity task."""
        progress = SendProgress()
        heartbeat = activity.in_activity()
        if heartbeat:
            details = activity.info().heartbeat_details
            if details and isinstance(details[0], dict):
                progress = SendProgress.model_validate(details[0])
        ledger = cls(progress, heartbeat=heartbeat)
        _current.set(ledger)
        return ledger

    @property
    def attempt(self) -> int:
        """The provider attempt this is (or would be, if the provider is called)."""
        return self.progress.provider_attempts + (0 if self.spent else 1)

    def spend(self) -> None:
        """Count a provider call, durably, before it is made (a crash mid-call counts)."""
        if self.spent:
            return
        self.spent = True
        self.progress.provider_attempts += 1
        self._save()

    def refund(self) -> None:
        """Take back the provider call just counted: it was the breaker's probe, and a
        failed probe is the breaker's cost, not this send's."""
        if self.spent:
            self.spent = False
            self.progress.provider_attempts -= 1

    def defer(self, retry_in: float, message: str, max_deferrals: int) -> ApplicationError:
        """The error that tells Temporal to come back in ``retry_in`` seconds, or, once the
        deferral budget is used up, that the provider stayed unavailable for too long."""
        self.progress.deferrals += 1
        self._save()
        exhausted = self.progress.deferrals > max_deferrals
        return ApplicationError(
            f"{message}; deferred {self.progress.deferrals} times"
            if exhausted
            else f"{message}; trying again in {retry_in:.1f}s",
            {
                "attempt": self.progress.provider_attempts,
                "deferrals": self.progress.deferrals,
                "retry_in": retry_in,
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
