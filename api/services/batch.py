"""Batch submission: up to 1,000 notification requests in one call, each validated,
deduplicated and accepted on its own, through the same submission path as a single one.

What makes it cheaper than 1,000 calls: one query for the items' idempotency keys, one
for their templates, the workflow starts concurrently (bounded, each under the API's
admission control), and one statement for all the ``accepted`` rows.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import RowMapping
from temporalio.service import RPCError

from api.backends import Backends
from api.errors import ApiError
from api.schemas_many import BatchItem, BatchResult
from herald import submission
from herald.contracts import NotificationInput
from herald.tenants import TenantContext

log = logging.getLogger(__name__)

# How long an item whose id another request is starting right now waits for its row.
_RACE_WAIT_SECONDS = 5.0
_REPLAYED_BODY_DIFFERS = "Idempotency-Key was already used with a different request body"


@dataclass
class _Item:
    index: int
    request: BatchItem
    notification_id: uuid.UUID
    fingerprint: str


def _error(index: int, status: int, detail: Any) -> BatchResult:
    return BatchResult(index=index, status=status, error={"detail": detail})


def _invalid(index: int, err: ValidationError) -> BatchResult:
    detail = [
        {
            "loc": ["body", "notifications", index, *error["loc"]],
            "msg": error["msg"],
            "type": error["type"],
        }
        for error in err.errors()
    ]
    return _error(index, 422, detail)


def _replay(item: _Item, row: RowMapping) -> BatchResult:
    """A known id: the same request again (200), or a different one under its key (409)."""
    if row["request_hash"] != item.fingerprint:
        return _error(item.index, 409, _REPLAYED_BODY_DIFFERS)
    return BatchResult(index=item.index, status=200, id=item.notification_id)


def _unstarted(index: int, err: Exception) -> BatchResult:
    """An item whose workflow could not be started: nothing of it was accepted."""
    if isinstance(err, ApiError):  # the admission gate's 503
        return _error(index, err.status_code, err.message)
    if not isinstance(err, RPCError):
        log.error("batch item not started", exc_info=err)
    return _error(index, 503, "workflow service unavailable, this item was not accepted; retry")


async def submit_batch(
    backends: Backends, tenant: TenantContext, raw_items: list[Any], *, request_id: str | None
) -> list[BatchResult]:
    """Accept every valid item; a result per item, in order."""
    engine, settings = backends.engine, backends.settings
    results: dict[int, BatchResult] = {}
    items: list[_Item] = []
    for index, raw in enumerate(raw_items):
        try:
            request = BatchItem.model_validate(raw)
        except ValidationError as err:
            results[index] = _invalid(index, err)
            continue
        key = request.idempotency_key
        notification_id = (
            submission.idempotent_id(tenant.id, key) if key is not None else uuid.uuid4()
        )
        items.append(_Item(index, request, notification_id, submission.request_hash(request)))

    # An item repeating an earlier item's key is answered as that one's replay.
    first_of: dict[uuid.UUID, _Item] = {}
    repeats: list[_Item] = []
    for item in items:
        if item.notification_id in first_of:
            repeats.append(item)
        else:
            first_of[item.notification_id] = item
    items = list(first_of.values())

    keyed = [item.notification_id for item in items if item.request.idempotency_key is not None]
    known = await submission.find_notifications(engine, tenant.id, keyed)
    fresh: list[_Item] = []
    for item in items:
        row = known.get(item.notification_id)
        if row is not None:
            results[item.index] = _replay(item, row)
        else:
            fresh.append(item)

    missing = await submission.missing_templates_many(
        engine, tenant.id, [item.request for item in fresh]
    )
    to_start: list[_Item] = []
    for item, absent in zip(fresh, missing, strict=True):
        if not absent:
            to_start.append(item)
            continue
        channels = ", ".join(channel.value for channel in absent)
        field = "template" if item.request.channel in absent else "fallback"
        results[item.index] = _error(
            item.index,
            422,
            [
                {
                    "loc": ["body", "notifications", item.index, field],
                    "msg": f"no {channels} version of template {item.request.template!r}; "
                    "create it first",
                    "type": "value_error",
                }
            ],
        )

    notifications = [_input(backends, tenant, item, request_id) for item in to_start]
    outcomes = await submission.accept_many(
        backends.temporal,
        engine,
        settings,
        notifications,
        concurrency=settings.batch_start_concurrency,
        slot=backends.admission.slot,
    )
    raced: list[_Item] = []
    for item, outcome in zip(to_start, outcomes, strict=True):
        if outcome is True:
            results[item.index] = BatchResult(index=item.index, status=202, id=item.notification_id)
        elif outcome is False:
            raced.append(item)  # the same key, accepted by a request running meanwhile
        else:
            results[item.index] = _unstarted(item.index, outcome)
    await _answer_raced(backends, tenant, raced, results)

    for item in repeats:
        first = results[first_of[item.notification_id].index]
        if first.id is None:
            results[item.index] = first.model_copy(update={"index": item.index})
        elif item.fingerprint != first_of[item.notification_id].fingerprint:
            results[item.index] = _error(item.index, 409, _REPLAYED_BODY_DIFFERS)
        else:
            results[item.index] = BatchResult(index=item.index, status=200, id=first.id)

    accepted = sum(result.status == 202 for result in results.values())
    log.info(
        "notification batch accepted",
        extra={"tenant": tenant.name, "items": len(raw_items), "accepted": accepted},
    )
    return [results[index] for index in range(len(raw_items))]


def _input(
    backends: Backends, tenant: TenantContext, item: _Item, request_id: str | None
) -> NotificationInput:
    return submission.build_input(
        backends.settings,
        notification_id=item.notification_id,
        tenant_id=tenant.id,
        tenant=tenant.name,
        request=item.request,
        idempotency_key=item.request.idempotency_key,
        request_id=request_id,
    )


async def _answer_raced(
    backends: Backends,
    tenant: TenantContext,
    raced: list[_Item],
    results: dict[int, BatchResult],
) -> None:
    """Answer the items another request started first, once their rows are there."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _RACE_WAIT_SECONDS
    while raced:
        rows = await submission.find_notifications(
            backends.engine, tenant.id, [item.notification_id for item in raced]
        )
        waiting = []
        for item in raced:
            row = rows.get(item.notification_id)
            if row is not None:
                results[item.index] = _replay(item, row)
            else:
                waiting.append(item)
        raced = waiting
        if raced and loop.time() > deadline:
            for item in raced:
                results[item.index] = _error(
                    item.index,
                    409,
                    "a request with this idempotency_key is still being accepted; retry",
                )
            return
        if raced:
            await asyncio.sleep(0.1)
