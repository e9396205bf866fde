"""One queued message in, one started ``NotificationWorkflow`` out.

Validation and submission are those of ``POST /v1/notifications`` (``herald.submission``,
``herald.tenants``): the same body model, the same template check, the same workflow
input and start. The message's ``id`` is the notification id and so the workflow id: a
redelivered or republished message starts nothing and is simply acknowledged.

Errors come in two kinds. A message that can never be valid raises
:class:`InvalidMessage` (the consumer dead-letters it). Everything else is judged by
:func:`is_transient`: an outage of PostgreSQL, Temporal or RabbitMQ is waited out, never
held against the message.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from aio_pika.exceptions import AMQPError, ChannelInvalidStateError
from pydantic import ValidationError
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from herald import amqp, digests, submission
from herald.contracts import Channel, QueuedNotification
from herald.logs import log_context
from herald.settings import Settings
from herald.tenants import tenant_by_name

log = logging.getLogger(__name__)

# What Temporal answers while it is down, restarting or overloaded.
_TRANSIENT_RPC = frozenset(
    {
        RPCStatusCode.CANCELLED,
        RPCStatusCode.UNKNOWN,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.ABORTED,
        RPCStatusCode.INTERNAL,
        RPCStatusCode.UNAVAILABLE,
    }
)


class Outcome(StrEnum):
    """What the bridge did with one message."""

    started = "started"
    duplicate = "duplicate"
    dead_lettered = "dead_lettered"
    requeued = "requeued"


class InvalidMessage(Exception):
    """A message that can never be processed as it is; the text says why."""


def is_transient(err: BaseException) -> bool:
    """Whether ``err`` means a service is unavailable (wait and retry) rather than a bug."""
    if isinstance(err, RPCError):
        return err.status in _TRANSIENT_RPC
    if isinstance(err, DBAPIError):
        # Connection trouble, not a statement PostgreSQL refused.
        return not isinstance(err, IntegrityError | ProgrammingError | DataError)
    return isinstance(
        err,
        OSError
        | TimeoutError
        | PoolTimeoutError
        | AMQPError
        | ChannelInvalidStateError
        | amqp.PublishFailed,
    )


def describe_invalid(err: ValidationError) -> str:
    """A pydantic error as one readable line: ``field: problem; field: problem``."""
    problems = []
    for error in err.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "body"
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)


def parse(body: bytes, queue: Channel, max_bytes: int) -> QueuedNotification:
    """The message as a :class:`QueuedNotification` consumed from ``queue``'s queue."""
    if len(body) > max_bytes:
        raise InvalidMessage(f"message is {len(body)} bytes; the limit is {max_bytes}")
    try:
        request = QueuedNotification.model_validate_json(body)
    except ValidationError as err:
        raise InvalidMessage(f"invalid message: {describe_invalid(err)}") from err
    if request.channel is not queue:
        raise InvalidMessage(
            f"channel {request.channel.value!r} does not match queue {amqp.request_queue(queue)}"
        )
    return request


class Ingest:
    """Turns message bodies into workflow starts; one per bridge process."""

    def __init__(self, settings: Settings, temporal: Client, engine: AsyncEngine) -> None:
        self._settings = settings
        self._temporal = temporal
        self._engine = engine

    async def submit(
        self, body: bytes, queue: Channel, *, request_id: str | None = None
    ) -> Outcome:
        """Start the notification ``body`` asks for; ``duplicate`` if it was started before.

        Raises :class:`InvalidMessage` for a message that can never be valid, and the
        underlying error (see :func:`is_transient`) when a service is unavailable.
        """
        request = parse(body, queue, self._settings.max_request_bytes)
        with log_context(notification_id=str(request.id), tenant=request.tenant):
            return await self._start(request, request_id)

    async def _start(self, request: QueuedNotification, request_id: str | None) -> Outcome:
        tenant = await tenant_by_name(self._engine, request.tenant)
        if tenant is None:
            raise InvalidMessage(f"unknown tenant {request.tenant!r}")
        prior = await submission.find_notification(self._engine, request.id)
        if prior is not None:
            same = prior["tenant_id"] == tenant.id and prior["request_hash"] in (
                None,
                submission.request_hash(request),
            )
            if not same:
                raise InvalidMessage(f"id {request.id} already names a different notification")
            return Outcome.duplicate
        if not await submission.template_exists(self._engine, tenant.id, request):
            raise InvalidMessage(
                f"no {request.channel.value} template {request.template!r} "
                f"for tenant {tenant.name!r}; create it first"
            )
        notification = submission.build_input(
            self._settings,
            notification_id=request.id,
            tenant_id=tenant.id,
            tenant=tenant.name,
            request=request,
            request_id=request_id,
        )
        # A request with a digest joins its digest instead of starting a notification.
        accept = digests.accept if digests.joins_digest(request) else submission.accept
        started = await accept(self._temporal, self._engine, self._settings, notification)
        return Outcome.started if started else Outcome.duplicate
