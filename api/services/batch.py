"""Batch submission: up to 1,000 notification requests in one call, each validated,
deduplicated and accepted on its own by the same intake as a single one.

What makes it cheaper than 1,000 calls is the intake's: one query for the items' ids,
one for their templates, the workflow starts concurrently (bounded, each under the
API's admission control), and one statement for all the ``accepted`` rows.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from temporalio.service import RPCError

from api.backends import Backends
from api.errors import ApiError
from api.schemas.notifications import BatchItem, BatchResult
from herald.intake import Accepted, Conflict, Invalid, Outcome, Replayed, Submission, Unstarted
from herald.tenants import TenantContext

log = logging.getLogger(__name__)


def _error(index: int, status: int, detail: Any) -> BatchResult:
    return BatchResult(index=index, status=status, error={"detail": detail})


def _invalid(index: int, errors: Sequence[Mapping[str, Any]]) -> BatchResult:
    detail = [
        {
            "loc": ["body", "notifications", index, *error["loc"]],
            "msg": error["msg"],
            "type": error["type"],
        }
        for error in errors
    ]
    return _error(index, 422, detail)


def _unstarted(index: int, err: Exception) -> BatchResult:
    """An item whose workflow could not be started: nothing of it was accepted."""
    if isinstance(err, ApiError):  # the admission gate's 503
        return _error(index, err.status_code, err.message)
    if not isinstance(err, RPCError):
        log.error("batch item not started", exc_info=err)
    return _error(index, 503, "workflow service unavailable, this item was not accepted; retry")


def _result(index: int, outcome: Outcome) -> BatchResult:
    """What a single submission would have answered, as this item's result."""
    match outcome:
        case Accepted(notification=notification):
            return BatchResult(index=index, status=202, id=notification.notification_id)
        case Replayed(notification_id=notification_id):
            return BatchResult(index=index, status=200, id=notification_id)
        case Conflict(message=message):
            return _error(index, 409, message)
        case Invalid(field=field, message=message):
            return _invalid(index, [{"loc": [field], "msg": message, "type": "value_error"}])
        case Unstarted(error=error):
            return _unstarted(index, error)
    raise AssertionError(f"unknown intake outcome {outcome!r}")


async def submit_batch(
    backends: Backends, tenant: TenantContext, raw_items: list[Any], *, request_id: str | None
) -> list[BatchResult]:
    """Accept every valid item; a result per item, in order."""
    results: dict[int, BatchResult] = {}
    indexes: list[int] = []
    submissions: list[Submission] = []
    for index, raw in enumerate(raw_items):
        try:
            item = BatchItem.model_validate(raw)
        except ValidationError as err:
            results[index] = _invalid(index, err.errors())
            continue
        indexes.append(index)
        submissions.append(Submission(item, idempotency_key=item.idempotency_key))
    outcomes = await backends.intake.accept(tenant, submissions, request_id=request_id)
    for index, outcome in zip(indexes, outcomes, strict=True):
        results[index] = _result(index, outcome)
    log.info(
        "notification batch accepted",
        extra={
            "tenant": tenant.name,
            "items": len(raw_items),
            "accepted": sum(result.status == 202 for result in results.values()),
        },
    )
    return [results[index] for index in range(len(raw_items))]
