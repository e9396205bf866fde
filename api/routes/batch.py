"""``POST /v1/notifications/batch``: up to 1,000 notifications in one call."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.deps import BackendsDep, SendTenantDep
from api.schemas.notifications import BatchIn, BatchOut
from api.services import batch

router = APIRouter(prefix="/v1/notifications", tags=["notifications"])


@router.post("/batch")
async def submit_batch(
    body: BatchIn,
    request: Request,
    response: Response,
    backends: BackendsDep,
    tenant: SendTenantDep,
) -> BatchOut:
    """Accept each item on its own: one result per item, in order (202, 200 for a replay
    of its idempotency_key, or the error a single submission would get). Answers once
    every accepted item is durably started."""
    results = await batch.submit_batch(
        backends,
        tenant,
        body.notifications,
        request_id=getattr(request.state, "request_id", None),
    )
    if any(result.status == 503 for result in results):
        response.headers["Retry-After"] = "1"
    return BatchOut(results=results)
