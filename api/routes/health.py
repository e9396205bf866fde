"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from api.deps import BackendsDep

router = APIRouter(tags=["health"])
_CHECK_TIMEOUT = 3.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


async def _check(name: str, probe: Any) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe, _CHECK_TIMEOUT)
    except Exception as err:
        return name, f"unavailable: {type(err).__name__}: {err}"[:300]
    return name, "ok"


async def _amqp(url: str) -> None:
    connection = await aio_pika.connect(url, timeout=_CHECK_TIMEOUT)
    await connection.close()


async def _database(backends: Any) -> None:
    async with backends.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


@router.get("/readyz")
async def readyz(backends: BackendsDep) -> JSONResponse:
    """Ready when PostgreSQL, Temporal and RabbitMQ all answer."""
    checks = dict(
        await asyncio.gather(
            _check("postgresql", _database(backends)),
            _check("temporal", backends.temporal.service_client.check_health()),
            _check("rabbitmq", _amqp(backends.settings.amqp_url)),
        )
    )
    ready = all(state == "ok" for state in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks}, 200 if ready else 503
    )


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus exposition."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
