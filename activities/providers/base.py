"""What every provider activity shares: error classification, the ``retrying`` log entry
and the shape of the result. A channel module only says how to deliver one message.

Transient failures (5xx, 429, timeouts, refused connections) raise a retryable
``ApplicationError`` so Temporal's ``RetryPolicy`` tries again with backoff; permanent
ones (4xx, invalid address, bad header) are ``non_retryable``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from herald import statuslog
from herald.contracts import AttemptFailed, SendRequest, SendResult, Status, StatusEvent
from herald.metrics import ATTEMPTS, NOTIFICATIONS, PROVIDER_LATENCY

log = logging.getLogger(__name__)

# A status write must never hold up or fail a send; the workflow records the outcome.
_STATUS_WRITE_TIMEOUT = 2.0


class ProviderError(Exception):
    """A provider refused or failed a message; ``permanent`` means retrying cannot help."""

    def __init__(self, message: str, *, permanent: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


class Provider(ABC):
    """One way to deliver a channel's messages (an SMTP relay, an SMS or push API)."""

    name: str

    @abstractmethod
    async def deliver(self, request: SendRequest) -> str:
        """Deliver one message and return the provider's message id."""

    async def close(self) -> None:  # noqa: B027 - most providers hold nothing of their own
        """Release connections held by the provider."""


class ProviderActivity:
    """Runs a provider under Herald's failure policy; built once per channel worker."""

    def __init__(self, provider: Provider, engine: AsyncEngine | None) -> None:
        self.provider = provider
        self._engine = engine

    async def send(self, request: SendRequest) -> SendResult:
        """Deliver ``request`` once; raise a classified ``ApplicationError`` on failure."""
        attempt = activity.info().attempt
        try:
            message_id = await self._timed_deliver(request)
        except ProviderError as err:
            raise await self._failure(
                request, attempt, str(err), err.permanent, err.retry_after
            ) from err
        except (TimeoutError, OSError) as err:
            reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            raise await self._failure(request, attempt, reason, False, None) from err
        ATTEMPTS.labels(request.channel.value, self.provider.name, "ok").inc()
        NOTIFICATIONS.labels(request.channel.value, self.provider.name, "sent").inc()
        log.info(
            "sent",
            extra={
                "channel": request.channel.value,
                "provider": self.provider.name,
                "attempt": attempt,
                "provider_message_id": message_id,
            },
        )
        return SendResult(
            provider=self.provider.name, provider_message_id=message_id, attempt=attempt
        )

    async def _timed_deliver(self, request: SendRequest) -> str:
        started = time.perf_counter()
        try:
            return await self.provider.deliver(request)
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
    ) -> ApplicationError:
        """Log the failed attempt (and ``retrying`` if another comes) and classify it."""
        message = f"{self.provider.name}: {reason}"
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
            channel, self.provider.name, "permanent_error" if permanent else "transient_error"
        ).inc()
        if not permanent and attempt < request.max_attempts:
            await self._record_retrying(request, attempt, message)
            await self._signal_retrying(request, attempt, message)
        else:
            NOTIFICATIONS.labels(channel, self.provider.name, "failed").inc()
        return ApplicationError(
            message,
            {"attempt": attempt, "provider": self.provider.name},
            type="ProviderPermanentError" if permanent else "ProviderTransientError",
            non_retryable=permanent,
            next_retry_delay=timedelta(seconds=retry_after) if retry_after else None,
        )

    async def _record_retrying(self, request: SendRequest, attempt: int, error: str) -> None:
        if self._engine is None:
            return
        event = StatusEvent(
            notification_id=request.notification_id,
            status=Status.retrying,
            cycle=request.cycle,
            attempt=attempt,
            provider=self.provider.name,
            at=datetime.now(UTC),
            error=error,
            detail=f"attempt {attempt} of {request.max_attempts} failed: {error}",
        )
        try:
            await asyncio.wait_for(
                statuslog.record_event(self._engine, event), _STATUS_WRITE_TIMEOUT
            )
        except Exception:  # the send outcome matters more than this log line
            log.exception(
                "could not record retrying", extra={"notification_id": str(request.notification_id)}
            )

    async def _signal_retrying(self, request: SendRequest, attempt: int, error: str) -> None:
        """Tell the workflow, so its status, query and search attributes say ``retrying``."""
        info = activity.info()
        if info.workflow_id is None:
            return
        failure = AttemptFailed(
            cycle=request.cycle, attempt=attempt, provider=self.provider.name, error=error
        )
        try:
            handle = activity.client().get_workflow_handle(
                info.workflow_id, run_id=info.workflow_run_id
            )
            await asyncio.wait_for(handle.signal("attempt_failed", failure), _STATUS_WRITE_TIMEOUT)
        except Exception:  # the retry itself matters more than its announcement
            log.warning("could not signal retrying to the workflow", exc_info=True)
