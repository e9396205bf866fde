"""One queued message in, one started ``NotificationWorkflow`` out.

Validation and acceptance are those of ``POST /v1/notifications``: the same body model
and the same intake (``herald.intake``). The message's ``id`` is the notification id
and so the workflow id: a redelivered or republished message starts nothing and is
simply acknowledged.

Errors come in two kinds. A message that can never be valid raises
:class:`InvalidMessage` (the consumer dead-letters it). Everything else is judged by
:func:`is_transient`: an outage of PostgreSQL, Temporal or RabbitMQ is waited out, never
held against the message.

A message with a ``flow`` field triggers that flow instead (``{"flow": key,
"recipients": [...] | "user_id": ..., "data", "idempotency_key"?, "cancellation_key"?}``),
through the same service as ``POST /v1/flows/{key}/trigger``; on any ingest queue.
"""

from __future__ import annotations

import json
import logging
from enum import StrEnum

from aio_pika.exceptions import AMQPError, ChannelInvalidStateError
from pydantic import ValidationError
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from herald import amqp, intake
from herald.contracts import Channel, QueuedNotification
from herald.dataerrors import is_data_error
from herald.logs import log_context
from herald.settings import Settings
from herald.tenants import TenantContext

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
    if is_data_error(err):
        # A value the database refused (NUL, bad UTF-8, out of range): the message's fault.
        return False
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


def flow_message(body: bytes) -> bool:
    """Whether the message is a flow trigger (a JSON object with a ``flow`` field)."""
    if b'"flow"' not in body:
        return False
    try:
        decoded = json.loads(body)
    except ValueError:
        return False
    return isinstance(decoded, dict) and "flow" in decoded


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
    """Turns message bodies into workflow starts through the intake; one per bridge
    process."""

    def __init__(self, settings: Settings, temporal: Client, engine: AsyncEngine) -> None:
        self._settings = settings
        self._engine = engine
        self._temporal = temporal
        self._intake = intake.Intake(temporal, engine, settings)

    async def _trigger_flow(
        self, body: bytes, *, producer: TenantContext, request_id: str | None
    ) -> Outcome:
        """Trigger the flow the message names for its producer's tenant; ``duplicate``
        when its ``idempotency_key`` started every run before."""
        # Imported here: a bridge that never meets a flow message needs none of it.
        from api.errors import ApiError
        from api.schemas.flows import QueuedFlowTrigger
        from api.services import flows

        try:
            message = QueuedFlowTrigger.model_validate_json(body)
            trigger = message.as_trigger()
        except ValidationError as err:
            raise InvalidMessage(f"invalid flow message: {describe_invalid(err)}") from err
        if message.tenant and message.tenant != producer.name:
            raise InvalidMessage(
                f"the message names tenant {message.tenant!r}, but its producer publishes "
                f"for tenant {producer.name!r}"
            )
        backends = flows.FlowBackends(self._engine, self._temporal, self._settings)
        with log_context(tenant=producer.name):
            try:
                await flows.trigger(
                    backends,
                    producer,
                    message.flow,
                    trigger,
                    request_id=request_id,
                )
            except ApiError as err:
                if err.status_code >= 500:
                    raise
                field = f"{err.field}: " if err.field else ""
                raise InvalidMessage(f"flow {message.flow!r}: {field}{err.message}") from err
        return Outcome.started

    async def submit(
        self,
        body: bytes,
        queue: Channel,
        *,
        producer: TenantContext,
        request_id: str | None = None,
    ) -> Outcome:
        """Start the notification ``body`` asks for; ``duplicate`` if it was started before.

        ``producer`` is the tenant (and test mode) of the AMQP user that published the
        message: the message acts for it, never for a tenant its body names.

        Raises :class:`InvalidMessage` for a message that can never be valid, and the
        underlying error (see :func:`is_transient`) when a service is unavailable.
        """
        if len(body) <= self._settings.max_request_bytes and flow_message(body):
            return await self._trigger_flow(body, producer=producer, request_id=request_id)
        request = parse(body, queue, self._settings.max_request_bytes)
        tenant = self._tenant(request, producer)
        with log_context(notification_id=str(request.id), tenant=tenant.name):
            outcome = await self._intake.accept_one(
                tenant,
                intake.Submission(request, notification_id=request.id),
                request_id=request_id,
            )
        match outcome:
            case intake.Accepted():
                return Outcome.started
            case intake.Replayed():
                return Outcome.duplicate
            case intake.Conflict(message=message):
                raise InvalidMessage(message)
            case intake.Invalid(message=message):
                raise InvalidMessage(message)
            case intake.Unstarted(error=error):
                raise error
        raise AssertionError(f"unknown intake outcome {outcome!r}")

    @staticmethod
    def _tenant(request: QueuedNotification, producer: TenantContext) -> TenantContext:
        """Who the message acts for: its producer's tenant, whatever the body says."""
        if request.tenant and request.tenant != producer.name:
            raise InvalidMessage(
                f"the message names tenant {request.tenant!r}, but its producer publishes "
                f"for tenant {producer.name!r}"
            )
        return producer
