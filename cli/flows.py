"""``herald flow put|trigger``: flows from the command line, through the same service
functions as the REST API."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from herald.settings import get_settings

flow_app = typer.Typer(help="Flows: several steps, several channels, one run per recipient.")
err_console = Console(stderr=True)


def _exit(code: int = 0) -> None:
    from cli.main import _exit_now

    _exit_now(code)


def _refuse(what: str, reason: str) -> None:
    err_console.print(f"[red]{what}:[/] {reason}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@flow_app.command("put")
def put(
    key: Annotated[str, typer.Argument(metavar="KEY", help="The flow's key.")],
    file: Annotated[
        Path, typer.Option("--file", help='The definition, JSON: {"steps": [...]} or [steps].')
    ],
    tenant: Annotated[str, typer.Option(help="Tenant name.")] = "demo",
    as_json: Annotated[bool, typer.Option("--json", help="Print the version as JSON.")] = False,
) -> None:
    """Store a new version of the flow and print its version number alone on stdout."""
    try:
        payload = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        _refuse("cannot read the definition", str(err))
    if isinstance(payload, list):
        payload = {"steps": payload}
    _exit(asyncio.run(_put(key, payload, tenant, as_json=as_json)))


async def _put(key: str, payload: Any, tenant_name: str, *, as_json: bool) -> int:
    from api.errors import ApiError
    from api.services.flows import save_flow
    from herald.db import make_engine
    from herald.tenants import tenant_by_name

    engine = make_engine(get_settings(), pool_size=1)
    try:
        tenant = await tenant_by_name(engine, tenant_name)
        if tenant is None:
            err_console.print(f"[red]no tenant {tenant_name!r}[/]")
            return 1
        try:
            flow, first = await save_flow(engine, tenant, _key(key), payload)
        except ApiError as err:
            where = f"{err.field}: " if err.field else ""
            err_console.print(f"[red]not saved:[/] {where}{err.message}", highlight=False)
            return 1
        err_console.print(
            f"flow {flow.key} version {flow.version}" + (" (new)" if first else ""),
            highlight=False,
        )
        print(flow.model_dump_json() if as_json else flow.version)
        return 0
    finally:
        await engine.dispose()


def _key(key: str) -> str:
    """The flow key, checked as the REST path checks it."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9._-]{1,128}", key):
        _refuse("invalid flow key", "1 to 128 of A-Z a-z 0-9 . _ -")
    return key


@flow_app.command("trigger")
def trigger(
    key: Annotated[str, typer.Argument(metavar="KEY", help="The flow's key.")],
    user: Annotated[
        list[str] | None, typer.Option("--user", help="Run it for this user (repeatable).")
    ] = None,
    topic: Annotated[str | None, typer.Option(help="Run it for this topic's subscribers.")] = None,
    data: Annotated[str, typer.Option(help="The trigger's data, a JSON object.")] = "{}",
    idempotency_key: Annotated[
        str | None, typer.Option(help="The same key starts nothing twice.")
    ] = None,
    cancellation_key: Annotated[
        str | None, typer.Option(help="POST /v1/flow-runs/cancel with it stops the runs.")
    ] = None,
    tenant: Annotated[str, typer.Option(help="Tenant name.")] = "demo",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole answer as JSON instead.")
    ] = False,
) -> None:
    """Trigger the flow and print the trigger id alone on stdout (messages to stderr)."""
    from pydantic import ValidationError

    from api.schemas.flows import TriggerIn
    from bridge.ingest import describe_invalid

    key = _key(key)
    try:
        body = TriggerIn.model_validate(
            {
                "recipients": user or None,
                "topic": topic,
                "data": json.loads(data),
                "idempotency_key": idempotency_key,
                "cancellation_key": cancellation_key,
            }
        )
    except ValueError as err:
        reason = describe_invalid(err) if isinstance(err, ValidationError) else str(err)
        _refuse("invalid trigger", reason)
    _exit(asyncio.run(_trigger(key, body, tenant, as_json=as_json)))


async def _trigger(key: str, body: Any, tenant_name: str, *, as_json: bool) -> int:
    from api.errors import ApiError
    from api.services.flows import FlowBackends
    from api.services.flows import trigger as start
    from herald.db import make_engine
    from herald.temporal import connect
    from herald.tenants import tenant_by_name

    settings = get_settings()
    engine = make_engine(settings, pool_size=2)
    try:
        tenant = await tenant_by_name(engine, tenant_name)
        if tenant is None:
            err_console.print(f"[red]no tenant {tenant_name!r}[/]")
            return 1
        backends = FlowBackends(engine, await connect(settings), settings)
        try:
            accepted = await start(backends, tenant, key, body)
        except ApiError as err:
            where = f"{err.field}: " if err.field else ""
            err_console.print(f"[red]not triggered:[/] {where}{err.message}", highlight=False)
            return 1
        runs = f"{len(accepted.runs)} run(s)" if accepted.runs is not None else "a topic's runs"
        err_console.print(
            f"flow {key}: trigger {accepted.trigger_id}, {runs}; "
            f"runs: GET /v1/flow-runs?trigger_id={accepted.trigger_id}",
            highlight=False,
        )
        # Only the id goes to stdout, so ``id=$(herald flow trigger ...)`` works.
        print(accepted.model_dump_json() if as_json else accepted.trigger_id)
        return 0
    finally:
        await engine.dispose()
