"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import BackendsDep
from api.services import health

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(backends: BackendsDep) -> JSONResponse:
    """Ready when PostgreSQL, Temporal and RabbitMQ all answer; ``queues`` names what is
    wrong with an ingest queue (held or stale), which does not make the API unready."""
    details = await health.readiness_details(backends)
    return JSONResponse(details, 200 if details["status"] == "ready" else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus exposition."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
