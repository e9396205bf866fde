"""The ``herald`` command: run the system or one of its processes, and operate it."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console

from herald.settings import get_settings

app = typer.Typer(help="Herald: durable email, SMS and push notifications.", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys.", no_args_is_help=True)
db_app = typer.Typer(help="The PostgreSQL schema.", no_args_is_help=True)
app.add_typer(apikey_app, name="apikey")
app.add_typer(db_app, name="db")
console = Console()
err_console = Console(stderr=True)


@app.command()
def dev(
    data_dir: Annotated[
        str, typer.Option(help="Where the Temporal SQLite file and logs go.")
    ] = ".herald",
    sinks: Annotated[bool, typer.Option(help="Run local SMTP/SMS/push sinks.")] = True,
) -> None:
    """Run everything on this machine: Temporal dev server + UI, migrations, API, workers."""
    from herald.devstack import run_dev

    raise typer.Exit(run_dev(get_settings(), data_dir, with_sinks=sinks))


@app.command()
def api() -> None:
    """Run the REST API (uvicorn)."""
    import uvicorn

    settings = get_settings()
    uvicorn.run(
        "api.main:app",
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
        access_log=False,
    )


@app.command()
def worker(
    queue: Annotated[str, typer.Option(help="core, email, sms or push.")],
    concurrency: Annotated[int | None, typer.Option(help="Tasks run at once.")] = None,
) -> None:
    """Run a worker for one task queue."""
    from herald.logs import configure_logging
    from workers.main import QUEUES, run_worker

    if queue not in QUEUES:
        err_console.print(f"[red]unknown queue {queue!r}[/]; choose one of {', '.join(QUEUES)}")
        raise typer.Exit(2)
    settings = get_settings()
    configure_logging(settings.log_level, component=f"worker-{queue}")
    asyncio.run(run_worker(settings, queue, concurrency))


@app.command()
def sinks(
    smtp_port: Annotated[int, typer.Option(help="SMTP port.")] = 1025,
    http_port: Annotated[int, typer.Option(help="Twilio/FCM HTTP port.")] = 8025,
) -> None:
    """Run the local SMTP and Twilio/FCM sinks in the foreground."""
    import time

    from herald.sinks import Sinks

    settings = get_settings()
    running = Sinks(
        smtp_port=smtp_port,
        http_port=http_port,
        sms_token=settings.sms_auth_token,
        push_token=settings.push_token,
    ).start()
    console.print(f"SMTP sink on :{smtp_port}; messages at {running.http_url}/_sink/messages")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        running.stop()


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create the database if needed and apply every migration."""
    from herald.migrate import ensure_database, upgrade

    settings = get_settings()
    if asyncio.run(ensure_database(settings.database_url)):
        console.print("created the database")
    upgrade(settings.database_url)
    console.print("schema is up to date")


@apikey_app.command("create")
def apikey_create(
    tenant: Annotated[str, typer.Option(help="Tenant name; created if new.")],
) -> None:
    """Create an API key for a tenant and print it (shown only this once)."""
    from herald.db import make_engine
    from herald.tenants import create_api_key

    async def create() -> str:
        engine = make_engine(get_settings(), pool_size=1)
        try:
            return await create_api_key(engine, tenant)
        finally:
            await engine.dispose()

    print(asyncio.run(create()))


if __name__ == "__main__":
    app()
