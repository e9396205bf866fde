"""What every provider activity shares: error classification, the ``retrying`` log entry
and the shape of the result. A channel module only says how to deliver one message.

Transient failures (5xx, 429, timeouts, refused connections) raise a retryable
``ApplicationError`` so Temporal's ``RetryPolicy`` tries again with backoff; permanent
ones (4xx, invalid address, bad header) are ``non_retryable``. ``max_attempts`` counts
provider calls only: a send deferred by an open circuit breaker (every provider of the
channel unavailable) comes back when the breaker says, without using up an attempt
(see ``attempts.py``, ``breaker.py`` and ``failover.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.providers.attempts import AttemptLedger
from activities.providers.sendrate import SendRate
from herald import statuslog
from herald.contracts import (
    AttemptFailed,
    Channel,
    RenderedMessage,
    SendRequest,
    SendResult,
    Status,
    StatusEvent,
    sent_detail,
)
from herald.metrics import ATTEMPTS, NOTIFICATIONS, PROVIDER_LATENCY

if TYPE_CHECKING:  # the chain is built of this module's providers
    from activities.providers.failover import ProviderChain
    from activities.providers.integrations import TenantChains
    from activities.templates import TemplateActivities

log = logging.getLogger(__name__)

# A status write must never hold up or fail a send; the workflow records the outcome.
_STATUS_WRITE_TIMEOUT = 2.0
# How old ``prepare``'s look at what a send cycle recorded may be for the send step to
# trust it: the two run in one workflow task, milliseconds apart, unless the task ran
# again after a crash (which takes a workflow task timeout, 10 s) or quiet hours held
# the send.
_FRESH_CHECK = timedelta(seconds=2)


def _fresh(checked_at: datetime | None, now: datetime) -> bool:
    return checked_at is not None and timedelta(0) <= now - checked_at <= _FRESH_CHECK


class ProviderError(Exception):
    """A provider refused or failed a message; ``permanent`` means retrying cannot help.

    ``provider_fault`` says whose failure it is. The provider's own (it is down, timed out,
    answered 5xx or SMTP 421, refused our credentials) counts against its circuit breaker,
    and when permanent another provider of the channel may still succeed. A refusal of
    this one recipient or message (an unknown mailbox, a greylisting 451, an invalid
    number) is the notification's failure alone: retried under its own policy when
    transient, and never a reason to hold back other recipients. Unless told, transient
    failures are the provider's and permanent ones the recipient's. ``provider`` names
    the provider that failed.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        retry_after: float | None = None,
        provider_fault: bool | None = None,
        provider: str | None = None,
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after
        self.provider_fault = (not permanent) if provider_fault is None else provider_fault
        self.provider = provider


class CircuitOpenError(ProviderError):
    """Every provider of the channel is unavailable; ``retry_after`` says when to look again."""

    def __init__(self, message: str, *, retry_after: float, provider: str | None = None) -> None:
        super().__init__(message, permanent=False, retry_after=retry_after, provider=provider)


@dataclass(frozen=True)
class Delivery:
    """A message a provider accepted, and which provider that was."""

    provider: str
    message_id: str


class Provider(ABC):
    """One way to deliver a channel's messages (an SMTP relay, an SMS or push API)."""

    name: str

    @abstractmethod
    async def deliver(self, request: SendRequest) -> str:
        """Deliver one message and return the provider's message id."""

    def serves(self, request: SendRequest) -> bool:
        """Whether this provider can send to ``request``'s address at all (a chat
        provider sends to its own service's addresses only)."""
        return True

    async def close(self) -> None:  # noqa: B027 - most providers hold nothing of their own
        """Release connections held by the provider."""

    async def check(self) -> tuple[bool, str]:
        """Whether the provider accepts these credentials, asked without sending anything
        to anyone (``POST /v1/integrations/{id}/check``): ``(ok, detail)``."""
        return False, f"{self.name}: checking credentials is not supported for this provider"


def probe_request(channel: Channel, address: str) -> SendRequest:
    """A message to an address that cannot exist, for a ``check`` that asks a provider
    about its credentials: the provider refuses the address after accepting them."""
    return SendRequest(
        notification_id=uuid.uuid4(),
        channel=channel,
        address=address,
        message=RenderedMessage(template_version=0, locale="en", body="check"),
    )


class ProviderActivity:
    """Runs a channel's providers under Herald's failure policy; built once per channel
    worker."""

    def __init__(
        self,
        provider: ProviderChain,
        engine: AsyncEngine | None,
        rate: SendRate | None = None,
        tenants: TenantChains | None = None,
        templates: TemplateActivities | None = None,
    ) -> None:
        self.provider = provider
        self._engine = engine
        self._rate = rate
        # Tenants' own integrations (``integrations.py``); without, always ``provider``.
        self._tenants = tenants
        # Where a body left out of the history comes from (``SendRequest.render``).
        self._templates = templates

    async def send(self, request: SendRequest) -> SendResult:
        """Deliver ``request`` once; raise a classified ``ApplicationError`` on failure.

        Runs as the workflow's first attempt (a local activity) and as the regular
        activity Temporal retries after it. Either way, a step that runs again after an
        earlier run may have got through first looks at what that run recorded.
        """
        info = activity.info()
        if request.first_failure is not None and info.attempt == 1:
            raise self._first_failure(request)
        ledger = AttemptLedger.resume()
        again = info.attempt > 1
        # The workflow's own first attempt logs ``sending`` (stamped now, before the
        # provider call) with what the provider answered: one statement for both.
        sending: StatusEvent | None = None
        if request.record_sending and info.attempt == 1 and ledger.attempt == 1:
            if request.recorded is not None:
                # ``prepare`` found this cycle sent: the step runs again after its worker
                # died once the provider had accepted it and the acceptance was logged.
                log.info("already sent: the provider's acceptance of this cycle is recorded")
                return request.recorded
            sending = self._event(
                request,
                Status.sending,
                attempt=1,
                template_version=request.message.template_version,
                detail=f"falling back to {request.channel.value}" if request.leg else None,
            )
            # What ``prepare`` read is not from just now (quiet hours held the send, or
            # the workflow task runs again after a crash): look again.
            again = not _fresh(request.checked_at, sending.at)
        if again:
            recorded = await self._recorded_acceptance(request)
            if recorded is not None:
                log.info(
                    "already sent: the provider's acceptance of this cycle is recorded",
                    extra={"provider": recorded.provider, "attempt": recorded.attempt},
                )
                return recorded
        if self._templates is not None:
            request = await self._templates.with_body(request)
        if self._rate is not None:
            await self._take_turn(ledger, local=info.is_local)
        try:
            delivery = await self._timed_deliver(request)
        except CircuitOpenError as err:
            log.warning(
                "send deferred: circuit open",
                extra={"retry_in_seconds": err.retry_after, "error": str(err)},
            )
            raise ledger.defer(err.retry_after or 1.0, str(err), request.max_deferrals) from err
        except ProviderError as err:
            ledger.spend()
            raise await self._failure(
                request,
                ledger.attempt,
                str(err),
                err.permanent,
                err.retry_after,
                provider=err.provider,
                sending=sending,
            ) from err
        except (TimeoutError, OSError) as err:
            ledger.spend()
            reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            raise await self._failure(
                request, ledger.attempt, reason, False, None, sending=sending
            ) from err
        ledger.spend()
        attempt = ledger.attempt
        ATTEMPTS.labels(request.channel.value, delivery.provider, "ok").inc()
        NOTIFICATIONS.labels(request.channel.value, delivery.provider, "sent").inc()
        log.info(
            "sent",
            extra={
                "channel": request.channel.value,
                "provider": delivery.provider,
                "attempt": attempt,
                "provider_message_id": delivery.message_id,
            },
        )
        sent = self._event(
            request,
            Status.sent,
            attempt=attempt,
            provider=delivery.provider,
            provider_message_id=delivery.message_id,
            detail=sent_detail(request.channel, delivery.provider),
        )
        return SendResult(
            provider=delivery.provider,
            provider_message_id=delivery.message_id,
            attempt=attempt,
            recorded=await self._record(sent, before=sending),
            recorded_at=sent.at,
        )

    def _first_failure(self, request: SendRequest) -> ApplicationError:
        """Attempt 1, made by the workflow's local step, as this activity's first attempt:
        the failure it had and when the next attempt comes (already logged)."""
        assert request.first_failure is not None
        retry_in = request.first_retry_in
        return ApplicationError(
            request.first_failure,
            {"attempt": 1, "provider": self.provider.name},
            type="ProviderTransientError",
            non_retryable=request.max_attempts <= 1,
            next_retry_delay=timedelta(seconds=retry_in) if retry_in else None,
        )

    async def _take_turn(self, ledger: AttemptLedger, *, local: bool) -> None:
        """Wait for the channel's sending rate; a first attempt that would have to wait
        hands the send to the regular activity instead (see ``sendrate.py``)."""
        assert self._rate is not None
        if not local:
            await self._rate.take()
            return
        wait = await self._rate.turn_now()
        if wait is not None:
            raise ApplicationError(
                f"{self._rate.per_second:g}/s sending rate reached; sending in {wait:.1f}s",
                {
                    "attempt": ledger.provider_attempts,
                    "retry_in": wait,
                    "at": datetime.now(UTC).isoformat(),
                },
                type="SendingRateReached",
            )

    async def _recorded_acceptance(self, request: SendRequest) -> SendResult | None:
        """What an earlier attempt of this send recorded as accepted, if anything (a
        database that does not answer counts as nothing recorded: sending again is safe,
        the copy carries the same idempotency key)."""
        if self._engine is None:
            return None
        try:
            return await asyncio.wait_for(
                statuslog.recorded_acceptance(self._engine, request), _STATUS_WRITE_TIMEOUT
            )
        except Exception:
            log.warning("could not read what earlier attempts recorded", exc_info=True)
            return None

    async def _timed_deliver(self, request: SendRequest) -> Delivery:
        started = time.perf_counter()
        try:
            chain = self.provider
            if self._tenants is not None:
                chain = await self._tenants.chain_for(request)
            return await chain.deliver_via(request)
        finally:
            PROVIDER_LATENCY.labels(request.channel.value, self.provider.name).observe(
                time.perf_counter() - started
            )

    async def _failure(
        self,
        request: SendRequest,
        attempt: int,
        reason: str,
        permanent: bool,
        retry_after: float | None,
        provider: str | None = None,
        sending: StatusEvent | None = None,
    ) -> ApplicationError:
        """Log the failed attempt (``retrying`` if another comes, after ``sending`` if the
        step has it to log) and classify it.

        A transient failure of the last attempt is final: Temporal's own attempt limit
        leaves room for deferrals, so the budget of provider calls is enforced here.
        """
        provider = provider or self.provider.name
        message = f"{provider}: {reason}"
        final = permanent or attempt >= request.max_attempts
        log.warning(
            "send attempt failed",
            extra={
                "notification_id": str(request.notification_id),
                "attempt": attempt,
                "permanent": permanent,
                "error": message,
            },
        )
        channel = request.channel.value
        ATTEMPTS.labels(
            channel, provider, "permanent_error" if permanent else "transient_error"
        ).inc()
        details: dict[str, Any] = {"attempt": attempt, "provider": provider}
        if retry_after:
            details["retry_in"] = retry_after
        if not final:
            details["logged"] = await self._record_retrying(request, attempt, message, sending)
            if request.announce_retries and not activity.info().is_local:
                await self._signal_retrying(request, attempt, message)
        else:
            NOTIFICATIONS.labels(channel, provider, "failed").inc()
            # The workflow logs ``sending`` before it fails the send.
            details["logged"] = sending is None
        # Later than every event this step wrote: the workflow's next ones come after.
        details["at"] = datetime.now(UTC).isoformat()
        return ApplicationError(
            message,
            details,
            type="ProviderPermanentError" if permanent else "ProviderTransientError",
            non_retryable=final,
            next_retry_delay=timedelta(seconds=retry_after) if retry_after else None,
        )

    async def _record_retrying(
        self, request: SendRequest, attempt: int, error: str, sending: StatusEvent | None
    ) -> bool:
        """Log that this attempt failed and another comes (after ``sending``, if given);
        True if it is in the log."""
        event = self._event(
            request,
            Status.retrying,
            attempt=attempt,
            provider=self.provider.name,
            error=error,
            detail=f"attempt {attempt} of {request.max_attempts} failed: {error}",
        )
        return await self._record(event, before=sending)

    @staticmethod
    def _event(request: SendRequest, status: Status, **fields: Any) -> StatusEvent:
        return StatusEvent(
            notification_id=request.notification_id,
            status=status,
            cycle=request.cycle,
            at=datetime.now(UTC),
            leg=request.leg,
            **fields,
        )

    async def _record(self, event: StatusEvent, before: StatusEvent | None = None) -> bool:
        """Write a transition from here (after ``before``, in the same statement), best
        effort: True if it is in the log.

        Whatever this could not write, the workflow writes (its steps retry until
        PostgreSQL answers), so a database outage never holds up or fails a send.
        """
        if self._engine is None:
            return False
        try:
            await asyncio.wait_for(
                statuslog.record_event(self._engine, event, before), _STATUS_WRITE_TIMEOUT
            )
        except Exception:
            log.warning("could not record %s", event.status.value, exc_info=True)
            return False
        return True

    async def _signal_retrying(self, request: SendRequest, attempt: int, error: str) -> None:
        """Tell the workflow, so its status, query and search attributes say ``retrying``."""
        info = activity.info()
        if info.workflow_id is None:
            return
        failure = AttemptFailed(
            cycle=request.cycle,
            leg=request.leg,
            attempt=attempt,
            provider=self.provider.name,
            error=error,
        )
        try:
            handle = activity.client().get_workflow_handle(
                info.workflow_id, run_id=info.workflow_run_id
            )
            await asyncio.wait_for(handle.signal("attempt_failed", failure), _STATUS_WRITE_TIMEOUT)
        except Exception:  # the retry itself matters more than its announcement
            log.warning("could not signal retrying to the workflow", exc_info=True)
