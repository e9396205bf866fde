"""``/v1/flows`` and ``/v1/flow-runs``: versioned flows, their triggers and runs."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request, Response

from api.backends import Backends
from api.deps import (
    BackendsDep,
    EngineDep,
    ManageTenantDep,
    ReadOrSendTenantDep,
    ReadTenantDep,
    SendTenantDep,
)
from api.schemas.flows import (
    CancelRunsIn,
    CancelRunsOut,
    FlowOut,
    FlowPage,
    FlowRunOut,
    FlowRunPage,
    TriggerAccepted,
    TriggerIn,
)
from api.services import flows
from herald.contracts import Text, UserId
from herald.flows.models import RunStatus

# One router for both resources (``/v1/flows``, ``/v1/flow-runs``): paths spelled whole.
router = APIRouter(tags=["flows"])

FlowKey = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")]


def _backends(backends: Backends) -> flows.FlowBackends:
    return flows.FlowBackends(backends.engine, backends.temporal, backends.settings)


@router.put(
    "/v1/flows/{key}", status_code=200, responses={201: {"description": "The first version"}}
)
async def put_flow(
    key: FlowKey,
    response: Response,
    engine: EngineDep,
    tenant: ManageTenantDep,
    body: Annotated[
        dict[str, Any],
        Body(
            description='`{"name"?, "category"?, "steps": [...]}`: a new version (see the '
            "contract for the steps); a 422 names the failing step's path"
        ),
    ],
) -> FlowOut:
    """Store a new version of the flow (201 for the first)."""
    flow, first = await flows.save_flow(engine, tenant, key, body)
    response.status_code = 201 if first else 200
    return flow


@router.get("/v1/flows")
async def list_flows(
    engine: EngineDep,
    tenant: ReadTenantDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[Text | None, Query(max_length=512)] = None,
) -> FlowPage:
    """Every flow's latest version, by key."""
    return await flows.list_flows(engine, tenant, limit=limit, cursor=cursor)


@router.get("/v1/flows/{key}")
async def get_flow(
    key: FlowKey,
    engine: EngineDep,
    tenant: ReadTenantDep,
    version: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
) -> FlowOut:
    """The latest version, or one with ``?version=N``."""
    return await flows.get_flow(engine, tenant, key, version)


@router.post("/v1/flows/{key}/trigger", status_code=202)
async def trigger_flow(
    key: FlowKey, body: TriggerIn, request: Request, backends: BackendsDep, tenant: SendTenantDep
) -> TriggerAccepted:
    """One run per recipient, each durably started before the answer."""
    return await flows.trigger(
        _backends(backends),
        tenant,
        key,
        body,
        request_id=getattr(request.state, "request_id", None),
    )


@router.get("/v1/flow-runs")
async def list_runs(
    engine: EngineDep,
    tenant: ReadOrSendTenantDep,
    flow: Annotated[Text | None, Query(min_length=1, max_length=128)] = None,
    user_id: Annotated[UserId | None, Query()] = None,
    status: RunStatus | None = None,
    trigger_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[Text | None, Query(max_length=512)] = None,
) -> FlowRunPage:
    """Newest first, filtered by flow, recipient, status or trigger."""
    return await flows.list_runs(
        engine,
        tenant,
        flow=flow,
        user_id=user_id,
        status=status,
        trigger_id=trigger_id,
        limit=limit,
        cursor=cursor,
    )


@router.post("/v1/flow-runs/cancel", status_code=202)
async def cancel_runs(
    body: CancelRunsIn, backends: BackendsDep, tenant: SendTenantDep
) -> CancelRunsOut:
    """Stop every running run of the tenant with this cancellation key."""
    cancelled = await flows.cancel_runs(_backends(backends), tenant, body.cancellation_key)
    return CancelRunsOut(cancelled=cancelled)


@router.get("/v1/flow-runs/{run_id}")
async def get_run(run_id: uuid.UUID, engine: EngineDep, tenant: ReadOrSendTenantDep) -> FlowRunOut:
    """A run with each step's status and outcome."""
    return await flows.get_run(engine, tenant, run_id)
