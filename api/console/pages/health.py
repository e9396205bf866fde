"""Health: readiness of PostgreSQL, Temporal and RabbitMQ, circuit breaker states per
provider, RabbitMQ queue depths (an ingest queue red with the bridge's reason when it
holds messages or its oldest one is stale) and Temporal pollers per task queue."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from api.console.rendering import render
from api.console.session import ConsoleReadDep
from api.services import health

router = APIRouter(prefix="/health")


@router.get("", response_class=HTMLResponse)
async def page(request: Request, console: ConsoleReadDep) -> Response:
    """Everything at once; each probe is bounded and reports its own failure."""
    backends = console.backends
    readiness, breakers, queues, pollers = await asyncio.gather(
        health.readiness(backends),
        health.breakers(backends),
        health.queue_depths(backends),
        health.task_queue_pollers(backends),
    )
    ingest = {state.queue: state for state in await health.ingest_queues(backends, queues)}
    return render(
        request,
        "health/page.html",
        console,
        readiness=readiness,
        breakers=breakers,
        queues=queues,
        ingest=ingest,
        stale_seconds=backends.settings.queue_stale_seconds,
        pollers=pollers,
        metrics_configured=bool(backends.settings.console_metrics_urls.strip()),
    )
