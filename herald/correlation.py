"""Carries a notification's correlation context from its workflow into every activity.

The workflow input already holds the request id (``X-Request-ID`` of the request that
asked for it), the notification id and the tenant. The worker interceptor here reads
them at workflow start, adds them as a Temporal header to every activity and local
activity the workflow schedules, and binds them to the logging context while an
activity runs, so each activity log line for that notification names them without any
activity having to know.
"""

from __future__ import annotations

from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadConverter
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    ExecuteWorkflowInput,
    Interceptor,
    StartActivityInput,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)
from temporalio.workflow import ActivityHandle

from herald.contracts import NotificationInput
from herald.logs import log_context

HEADER = "herald-correlation"


def context_of(notification: NotificationInput) -> dict[str, str]:
    """The correlation fields of one notification (no PII)."""
    fields = {"notification_id": str(notification.notification_id), "tenant": notification.tenant}
    if notification.request_id:
        fields["request_id"] = notification.request_id
    return fields


def _encode(fields: dict[str, str]) -> Payload:
    return PayloadConverter.default.to_payloads([fields])[0]


def _decode(payload: Payload | None) -> dict[str, str]:
    if payload is None:
        return {}
    try:
        decoded = PayloadConverter.default.from_payloads([payload], [dict])[0]
    except Exception:  # a malformed header must never fail the activity
        return {}
    return {str(key): str(value) for key, value in decoded.items()}


class CorrelationInterceptor(Interceptor):
    """Register on every worker: ``Worker(..., interceptors=[CorrelationInterceptor()])``."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        """Bind the header's fields to the log context while the activity runs."""
        return _ActivityInbound(next)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        """Read the context at workflow start and pass it on to activities."""
        return _WorkflowInbound


class _ActivityInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        with log_context(**_decode(input.headers.get(HEADER))):
            return await self.next.execute_activity(input)


class _WorkflowInbound(WorkflowInboundInterceptor):
    header: Payload | None = None

    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_WorkflowOutbound(outbound, self))

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        request = input.args[0] if input.args else None
        if not isinstance(request, NotificationInput):
            return await self.next.execute_workflow(input)
        fields = context_of(request)
        self.header = _encode(fields)
        with log_context(**fields):
            return await self.next.execute_workflow(input)


class _WorkflowOutbound(WorkflowOutboundInterceptor):
    def __init__(self, next: WorkflowOutboundInterceptor, inbound: _WorkflowInbound) -> None:
        super().__init__(next)
        self._inbound = inbound

    def _with_header(self, headers: Any) -> dict[str, Payload]:
        merged = dict(headers)
        if self._inbound.header is not None:
            merged[HEADER] = self._inbound.header
        return merged

    def start_activity(self, input: StartActivityInput) -> ActivityHandle[Any]:
        input.headers = self._with_header(input.headers)
        return self.next.start_activity(input)

    def start_local_activity(self, input: StartLocalActivityInput) -> ActivityHandle[Any]:
        input.headers = self._with_header(input.headers)
        return self.next.start_local_activity(input)
