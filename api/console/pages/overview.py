"""The overview the console opens on: per channel over the last hour and day, what was
sent, delivered, failed and suppressed (charts), delivery success against the target,
accept→sent latency, the top failure reasons, and the queues and breakers."""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from api.console.rendering import render
from api.console.session import ConsoleReadDep
from api.services import health, overview

router = APIRouter(prefix="/overview")


def failures_link(reason: overview.FailureReason) -> str:
    """The notifications list showing the failed ones with this reason."""
    query = {"status": "failed", "error": reason.reason}
    if len(reason.channels) == 1:
        query["channel"] = reason.channels[0]
    return "/console/notifications?" + urlencode(query)


@router.get("", response_class=HTMLResponse)
async def page(request: Request, console: ConsoleReadDep) -> Response:
    """Everything at once; the queue and breaker probes are bounded and report their own
    failure, as on the health page."""
    backends = console.backends
    summary, queues, breakers = await asyncio.gather(
        overview.overview(backends.engine, console.tenant),
        health.queue_depths(backends),
        health.breakers(backends),
    )
    return render(
        request,
        "overview/page.html",
        console,
        o=summary,
        outcomes=list(overview.OUTCOMES),
        queues=queues,
        breakers=breakers,
        failures_link=failures_link,
    )
