"""``herald doctor``: check a running deployment from outside and say what is wrong.

It asks what the console's health page shows (``api/services/health.py``, the same
probes): the API's ``/readyz``, PostgreSQL, Temporal and RabbitMQ, the pollers of every
task queue, each ingest queue as the bridges report it (messages held while they retry
an outage, an oldest message older than ``HERALD_QUEUE_STALE_SECONDS``, messages nobody
consumes) and the circuit breakers of the processes whose metrics it can read. It prints
one table and exits 1 naming each problem, 0 when all is well.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from herald.settings import Settings, get_settings

# How long connecting to Temporal may take before it counts as down.
_CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Finding:
    """One thing checked: what, which one, whether it is fine, and what was seen."""

    area: str
    name: str
    ok: bool
    detail: str


async def _api(api_url: str) -> Finding:
    import httpx

    url = f"{api_url.rstrip('/')}/readyz"
    try:
        async with httpx.AsyncClient(timeout=5.0) as http:
            response = await http.get(url)
        status = response.json().get("status") if response.status_code in {200, 503} else None
    except (httpx.HTTPError, ValueError, AttributeError) as err:
        return Finding("api", url, False, f"unreachable: {type(err).__name__}: {err}"[:300])
    if response.status_code == 200 and status == "ready":
        return Finding("api", url, True, "ready")
    return Finding("api", url, False, f"{response.status_code}: {response.text[:300]}")


async def examine(
    settings: Settings, api_url: str, metrics_urls: Sequence[str] = ()
) -> list[Finding]:
    """Every check, in the order the table shows them."""
    from api.services import health
    from herald.db import make_engine
    from herald.temporal import connect

    engine = make_engine(settings, pool_size=1)
    try:
        temporal = await asyncio.wait_for(connect(settings), _CONNECT_TIMEOUT)
    except Exception:  # readiness says why: it reports Temporal "not connected"
        temporal = None
    deployment = health.Deployment(engine, temporal, settings)
    try:
        api, ready, pollers, depths, breakers = await asyncio.gather(
            _api(api_url),
            health.readiness(deployment),
            health.task_queue_pollers(deployment),
            health.queue_depths(deployment),
            health.breakers(deployment, [f"{api_url.rstrip('/')}/metrics", *metrics_urls]),
        )
        ingest = await health.ingest_queues(deployment, depths)
    finally:
        await engine.dispose()

    findings = [api]
    findings += [Finding(name, "", state == "ok", state) for name, state in ready.items()]
    for tq in pollers:
        names = ", ".join(poller.identity for poller in tq.pollers)
        detail = tq.error or (f"{len(tq.pollers)}: {names}" if tq.pollers else "no worker polls")
        findings.append(
            Finding("pollers", f"{tq.task_queue} ({tq.kind})", bool(tq.pollers), detail)
        )
    by_queue = {state.queue: state for state in ingest}
    for depth in depths:
        state = by_queue.get(depth.name)
        if depth.error:
            findings.append(Finding("queue", depth.name, False, depth.error))
        elif state is not None and state.problem:
            findings.append(Finding("queue", depth.name, False, state.problem))
        else:
            detail = f"{depth.messages:,} ready, {depth.consumers} consumers"
            findings.append(Finding("queue", depth.name, True, detail))
    for reading in breakers:
        fine = reading.state in {"closed", "half-open"}
        findings.append(
            Finding("breaker", f"{reading.source} {reading.breaker}", fine, reading.state)
        )
    return findings


def show(findings: Sequence[Finding], console: Console) -> None:
    """The table, then one line per problem (or that all is well)."""
    table = Table(title="Herald deployment", show_lines=False)
    for column in ("", "check", "name", "detail"):
        table.add_column(column, overflow="fold")
    for finding in findings:
        mark = "[green]ok[/]" if finding.ok else "[bold red]FAIL[/]"
        # What a service answered is shown as it is, never read as markup.
        table.add_row(mark, Text(finding.area), Text(finding.name), Text(finding.detail))
    console.print(table)
    problems = [finding for finding in findings if not finding.ok]
    plain: dict[str, Any] = {"highlight": False, "markup": False, "soft_wrap": True}
    if not problems:
        console.print("all is well", **plain)
    for finding in problems:
        console.print(f"problem: {finding.area} {finding.name}: {finding.detail}", **plain)


def doctor(
    api: Annotated[
        str | None,
        typer.Option(help="The API's base URL (default: HERALD_PUBLIC_URL)."),
    ] = None,
    metrics: Annotated[
        list[str] | None,
        typer.Option(
            help="A worker's /metrics URL whose breakers to check (repeatable; "
            "HERALD_CONSOLE_METRICS_URLS are always read)."
        ),
    ] = None,
) -> None:
    """Check a running deployment (API, services, pollers, queues, breakers); exit 1
    naming what is wrong, 0 when all is well."""
    from cli.main import _exit_now

    settings = get_settings()
    findings = asyncio.run(examine(settings, api or settings.public_url, metrics or []))
    show(findings, Console())
    _exit_now(0 if all(finding.ok for finding in findings) else 1)
