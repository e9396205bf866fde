"""``/v1/broadcasts``: one message to a topic, a list of users, or every user."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response

from api.deps import BackendsDep, EngineDep, ReadOrSendTenantDep, SendTenantDep
from api.schemas.broadcasts import BroadcastAccepted, BroadcastIn, BroadcastOut, BroadcastPage
from api.services import broadcasts
from herald.contracts import BroadcastStatus, Text

router = APIRouter(prefix="/v1/broadcasts", tags=["broadcasts"])


@router.post(
    "",
    status_code=202,
    responses={200: {"description": "Replay of an earlier request with the same Idempotency-Key"}},
)
async def create_broadcast(
    body: BroadcastIn,
    request: Request,
    response: Response,
    backends: BackendsDep,
    tenant: SendTenantDep,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
    ] = None,
) -> BroadcastAccepted:
    """Start a broadcast (202 once its fan-out is durably started)."""
    outcome = await broadcasts.create_broadcast(
        broadcasts.BroadcastBackends(backends.engine, backends.temporal, backends.settings),
        tenant,
        body,
        idempotency_key=idempotency_key,
        request_id=getattr(request.state, "request_id", None),
    )
    status_url = str(request.url_for("get_broadcast", broadcast_id=outcome.broadcast.id))
    response.status_code = 202 if outcome.created else 200
    response.headers["Location"] = status_url
    return BroadcastAccepted(
        id=outcome.broadcast.id, status=outcome.broadcast.status, status_url=status_url
    )


@router.get("")
async def list_broadcasts(
    engine: EngineDep,
    tenant: ReadOrSendTenantDep,
    status: BroadcastStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[Text | None, Query(max_length=512)] = None,
) -> BroadcastPage:
    """Newest first, each with its progress."""
    return await broadcasts.list_broadcasts(
        engine, tenant, status=status, limit=limit, cursor=cursor
    )


@router.get("/{broadcast_id}", name="get_broadcast")
async def get_broadcast(
    broadcast_id: uuid.UUID, engine: EngineDep, tenant: ReadOrSendTenantDep
) -> BroadcastOut:
    """Progress: total, started, and what became of those started."""
    return await broadcasts.get_broadcast(engine, tenant, broadcast_id)


@router.post("/{broadcast_id}/cancel", status_code=202)
async def cancel_broadcast(
    broadcast_id: uuid.UUID, backends: BackendsDep, tenant: SendTenantDep
) -> BroadcastOut:
    """Start no more recipients; those already started finish. 409 once it has ended."""
    return await broadcasts.cancel_broadcast(
        broadcasts.BroadcastBackends(backends.engine, backends.temporal, backends.settings),
        tenant,
        broadcast_id,
    )
