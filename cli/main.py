"""The ``herald`` command: run the system or one of its processes, and operate it."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
import uvloop
from rich.console import Console

from cli.broadcasts import broadcast_app, topic_app
from cli.doctor import doctor
from cli.flows import flow_app
from cli.producers import producer_app
from herald.contracts import Channel
from herald.runtime import tune_gc
from herald.settings import InsecureSettings, get_settings

if TYPE_CHECKING:
    from cli.stuck import StuckNotification


class _HeraldCommand(typer.Typer):
    """The top-level command: a configuration it refuses to run with is reported to the
    operator as one line on stderr (exit status 2), not as a traceback."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except InsecureSettings as err:
            typer.echo(f"herald: {err}", err=True)
            raise SystemExit(2) from None


app = _HeraldCommand(
    help="Herald: durable email, SMS and push notifications.", no_args_is_help=True
)
apikey_app = typer.Typer(help="API keys.", no_args_is_help=True)
db_app = typer.Typer(help="The PostgreSQL schema.", no_args_is_help=True)
app.add_typer(apikey_app, name="apikey")
app.add_typer(db_app, name="db")
rabbitmq_app = typer.Typer(help="RabbitMQ topology.", no_args_is_help=True)
app.add_typer(rabbitmq_app, name="rabbitmq")
dead_app = typer.Typer(
    help="Dead-lettered messages (herald.dead) and failed notifications (herald.failed).",
    no_args_is_help=True,
)
app.add_typer(dead_app, name="dead")
temporal_app = typer.Typer(help="The Temporal cluster Herald runs on.", no_args_is_help=True)
app.add_typer(temporal_app, name="temporal")
tenant_app = typer.Typer(help="Tenants and their limits.", no_args_is_help=True)
app.add_typer(tenant_app, name="tenant")
app.add_typer(broadcast_app, name="broadcast", no_args_is_help=True)
app.add_typer(topic_app, name="topic", no_args_is_help=True)
app.add_typer(producer_app, name="producer", no_args_is_help=True)
app.add_typer(flow_app, name="flow", no_args_is_help=True)
app.command()(doctor)
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
    from devtools.devstack import run_dev

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
    tune_gc()
    uvloop.run(run_worker(settings, queue, concurrency))


@app.command()
def sinks(
    smtp_port: Annotated[int, typer.Option(help="SMTP port.")] = 1025,
    http_port: Annotated[int, typer.Option(help="Twilio/FCM HTTP port.")] = 8025,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 in a container).")] = (
        "127.0.0.1"
    ),
) -> None:
    """Run the local SMTP and Twilio/FCM sinks in the foreground."""
    import time

    from devtools.sinks import Sinks

    settings = get_settings()
    running = Sinks(
        smtp_port=smtp_port,
        http_port=http_port,
        sms_token=settings.sms_auth_token.get_secret_value(),
        push_token=settings.push_token.get_secret_value(),
        host=host,
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


class KeyScope(StrEnum):
    """What an API key may do (``herald.db.API_KEY_SCOPES``, in the same order)."""

    send = "send"
    read = "read"
    manage = "manage"
    admin = "admin"


@apikey_app.command("create")
def apikey_create(
    tenant: Annotated[str, typer.Option(help="Tenant name; created if new.")],
    test: Annotated[
        bool, typer.Option("--test", help="A test key: its notifications never reach a provider.")
    ] = False,
    scope: Annotated[
        list[KeyScope] | None,
        typer.Option(
            help="What the key may do (repeat for several): send, read, manage, admin. "
            "Default: all four."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON object (key, tenant, test, scopes).")
    ] = False,
) -> None:
    """Create an API key for a tenant and print it alone on stdout (shown only this
    once)."""
    import json

    from herald.db import make_engine
    from herald.tenants import ALL_SCOPES, create_api_key

    scopes = frozenset(chosen.value for chosen in scope) if scope else ALL_SCOPES

    async def create() -> str:
        engine = make_engine(get_settings(), pool_size=1)
        try:
            return await create_api_key(engine, tenant, test=test, scopes=scopes)
        finally:
            await engine.dispose()

    key = asyncio.run(create())
    if as_json:
        print(json.dumps({"key": key, "tenant": tenant, "test": test, "scopes": sorted(scopes)}))
    else:
        print(key)


@tenant_app.command("limit")
def tenant_limit(
    tenant: Annotated[str, typer.Argument(help="Tenant name.")],
    per_minute: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Requests per minute for the tenant, across all its keys; omit for the "
            "default per API key.",
        ),
    ] = None,
) -> None:
    """Set a tenant's REST rate limit, shared by all its keys (unset: each key has
    HERALD_RATE_LIMIT_PER_MINUTE)."""
    from herald.db import make_engine
    from herald.tenants import set_rate_limit

    async def apply() -> bool:
        engine = make_engine(get_settings(), pool_size=1)
        try:
            return await set_rate_limit(engine, tenant, per_minute)
        finally:
            await engine.dispose()

    if not asyncio.run(apply()):
        err_console.print(f"[red]no tenant {tenant!r}[/]")
        raise typer.Exit(1)
    limit = f"{per_minute}/min across its keys" if per_minute else "the default per API key"
    console.print(f"{tenant}: {limit}")


@tenant_app.command("origins")
def tenant_origins(
    tenant: Annotated[str, typer.Argument(help="Tenant name.")],
    origins: Annotated[
        list[str] | None,
        typer.Argument(help="Browser origins (https://app.example.com); none: show them."),
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Allow no browser origin.")] = False,
) -> None:
    """Set the browser origins allowed to call the tenant's in-app inbox (CORS); they
    replace the ones set before."""
    from herald.db import make_engine
    from herald.inbox.origins import InvalidOrigin, normalize_origin, origins_of, set_origins

    try:
        wanted = [normalize_origin(origin) for origin in origins or []]
    except InvalidOrigin as err:
        err_console.print(f"[red]{err}[/]")
        raise typer.Exit(2) from None

    async def apply() -> list[str] | None:
        engine = make_engine(get_settings(), pool_size=1)
        try:
            if wanted or clear:
                return await set_origins(engine, tenant, wanted)
            return await origins_of(engine, tenant)
        finally:
            await engine.dispose()

    now = asyncio.run(apply())
    if now is None:
        err_console.print(f"[red]no tenant {tenant!r}[/]")
        raise typer.Exit(1)
    print("\n".join(now) if now else f"{tenant}: no browser origins")


def _exit_now(code: int = 0) -> NoReturn:
    """End a short command that used a Temporal client without interpreter teardown.

    The client's Rust threads can abort a finalizing interpreter (a known SDK issue,
    "PyGILState_Release ... finalizing"), which would turn a success into exit 134.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@temporal_app.command("setup")
def temporal_setup() -> None:
    """Register Herald's search attributes on the cluster's namespace (idempotent)."""
    from herald.search import setup_cluster

    settings = get_settings()
    try:
        added = asyncio.run(setup_cluster(settings))
    except RuntimeError as err:
        err_console.print(f"[red]{err}[/]")
        _exit_now(1)
    where = f"namespace {settings.temporal_namespace} at {settings.temporal_address}"
    if added:
        console.print(f"registered {', '.join(added)} on {where}")
    else:
        console.print(f"search attributes already registered on {where}")
    _exit_now()


@app.command()
def stuck(
    older_than: Annotated[
        str, typer.Option(help="Sending or retrying for longer than this (90s, 10m, 2h).")
    ] = "10m",
    limit: Annotated[int, typer.Option(help="List at most this many.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List notifications stuck sending or retrying, with their last error and UI link."""
    from cli.stuck import find_stuck, parse_duration
    from herald.temporal import connect

    try:
        age = parse_duration(older_than)
    except ValueError as err:
        err_console.print(f"[red]{err}[/]")
        raise typer.Exit(2) from err
    settings = get_settings()

    async def find() -> list[StuckNotification]:
        return await find_stuck(await connect(settings), settings, age, limit)

    _print_stuck(asyncio.run(find()), age, as_json=as_json)
    _exit_now()


def _print_stuck(rows: list[StuckNotification], age: timedelta, *, as_json: bool) -> None:
    import dataclasses
    import json

    from cli.stuck import stuck_query

    if as_json:
        for row in rows:
            print(json.dumps(dataclasses.asdict(row) | {"id": row.notification_id}, default=str))
        return
    if not rows:
        console.print(f"nothing has been sending or retrying for longer than {age}")
        return
    now = datetime.now(UTC)
    plain: dict[str, Any] = {"highlight": False, "markup": False, "soft_wrap": True}
    for row in rows:
        since = str(now - row.since).split(".")[0] if row.since else "?"
        console.print(
            f"{row.notification_id}  {row.status} for {since}  {row.channel} · template "
            f"{row.template} · tenant {row.tenant} · attempt {row.attempts}",
            **plain,
        )
        console.print(f"  last error: {row.last_error or '-'}", **plain)
        console.print(f"  {row.ui_url}", **plain)
    console.print(f"\n{len(rows)} stuck; Temporal UI filter: {stuck_query(now - age)}", **plain)


@app.command()
def bridge() -> None:
    """Run the RabbitMQ bridge: queued notification requests become workflows."""
    from bridge.main import run_bridge
    from herald.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, component="bridge")
    tune_gc()
    uvloop.run(run_bridge(settings))


@rabbitmq_app.command("setup")
def rabbitmq_setup() -> None:
    """Declare Herald's exchanges, queues and bindings (idempotent)."""
    from aio_pika.exceptions import AMQPError

    from herald import amqp

    settings = get_settings()
    try:
        queues = asyncio.run(amqp.setup(settings))
    except (AMQPError, OSError, TimeoutError) as err:
        err_console.print(f"[red]could not set up RabbitMQ:[/] {type(err).__name__}: {err}")
        raise typer.Exit(1) from err
    console.print(
        f"{amqp.REQUESTS_EXCHANGE} routes to {', '.join(queues.values())}; "
        f"dead letters in {amqp.DEAD}, failed notifications in {amqp.FAILED}",
        highlight=False,
    )


@app.command()
def publish(
    channel: Annotated[Channel, typer.Option(help="email, sms or push.")],
    user_id: Annotated[str, typer.Option(help="The recipient's id.")],
    template: Annotated[str, typer.Option(help="Template key.")],
    data: Annotated[str, typer.Option(help="Template data, a JSON object.")] = "{}",
    tenant: Annotated[
        str | None,
        typer.Option(
            help="Optional: the requests belong to the tenant of HERALD_AMQP_URL's user "
            "(herald producer add); another name here gets them dead-lettered."
        ),
    ] = None,
    locale: Annotated[str | None, typer.Option(help="Locale, e.g. de-AT.")] = None,
    count: Annotated[int, typer.Option(min=1, help="How many, each with its own id.")] = 1,
    notification_id: Annotated[
        str | None, typer.Option("--id", help="Notification id (with --count 1); else random.")
    ] = None,
) -> None:
    """Publish notification requests to RabbitMQ: persistent, mandatory, confirmed."""
    import json
    import uuid
    from collections.abc import Callable

    from pydantic import ValidationError
    from rich.progress import Progress

    from bridge.ingest import describe_invalid
    from herald.amqp import PublishFailed
    from herald.contracts import QueuedNotification
    from herald.producer import NotificationProducer

    if notification_id is not None and count != 1:
        err_console.print("[red]--id names one notification; use it with --count 1[/]")
        raise typer.Exit(2)
    try:
        values = json.loads(data)
        batch = [
            QueuedNotification(
                id=uuid.UUID(notification_id) if notification_id else uuid.uuid4(),
                tenant=tenant,
                channel=channel,
                user_id=user_id,
                template=template,
                locale=locale,
                data=values,
            )
            for _ in range(count)
        ]
    except ValueError as err:
        reason = describe_invalid(err) if isinstance(err, ValidationError) else str(err)
        err_console.print(f"[red]invalid request:[/] {reason}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from err

    async def send(advance: Callable[[QueuedNotification], None] | None) -> int:
        async with NotificationProducer(settings=get_settings()) as producer:
            return await producer.publish_many(batch, on_published=advance)

    try:
        if count == 1:
            asyncio.run(send(None))
        else:
            with Progress(console=err_console) as progress:
                task = progress.add_task("publishing", total=count)
                asyncio.run(send(lambda _: progress.advance(task)))
    except PublishFailed as err:
        err_console.print(f"[red]not published:[/] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from err
    if count == 1:
        print(batch[0].id)
    else:
        console.print(f"published {count} {channel.value} requests", highlight=False)


def _dead_queues(queue: str) -> tuple[str, ...]:
    from herald import amqp

    choices = {"dead": (amqp.DEAD,), "failed": (amqp.FAILED,), "all": (amqp.DEAD, amqp.FAILED)}
    if queue not in choices:
        err_console.print(f"[red]unknown queue {queue!r}[/]; choose dead, failed or all")
        raise typer.Exit(2)
    return choices[queue]


@dead_app.command("list")
def dead_list(
    queue: Annotated[str, typer.Option(help="dead, failed or all.")] = "all",
    limit: Annotated[int, typer.Option(min=1, help="At most this many per queue.")] = 100,
) -> None:
    """Show what is in herald.dead and herald.failed and why; the queues stay as they were."""
    from rich.table import Table

    from bridge.deadletters import list_dead

    found = asyncio.run(list_dead(get_settings(), _dead_queues(queue), limit))
    if not found:
        console.print("nothing dead-lettered, nothing failed")
        return
    table = Table("queue", "id", "channel", "at", "reason", show_lines=False)
    for entry in found:
        table.add_row(
            entry.queue,
            entry.notification_id or entry.message_id,
            entry.channel or "?",
            entry.at.isoformat(timespec="seconds") if entry.at else "",
            entry.reason,
        )
    console.print(table)


@dead_app.command("replay")
def dead_replay(
    wanted: Annotated[
        str | None, typer.Argument(metavar="ID", help="Notification id or message id.")
    ] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Replay every message.")] = False,
    queue: Annotated[str, typer.Option(help="dead, failed or all.")] = "all",
) -> None:
    """Resubmit dead-lettered requests and resend failed notifications, once fixed."""
    from bridge.deadletters import replay_dead

    if (wanted is None) == (not replay_all) or (wanted is not None and replay_all):
        err_console.print("[red]name one ID, or pass --all[/]")
        raise typer.Exit(2)
    try:
        done = asyncio.run(replay_dead(get_settings(), wanted=wanted, queues=_dead_queues(queue)))
    except Exception as err:
        err_console.print(
            f"[red]replay stopped:[/] {type(err).__name__}: {err}", highlight=False, soft_wrap=True
        )
        _exit_now(1)
    if not done:
        console.print(f"nothing to replay{f' named {wanted}' if wanted else ''}")
        _exit_now(1 if wanted else 0)
    for item in done:
        name = item.entry.notification_id or item.entry.message_id
        console.print(
            f"{item.result.value:<11} {item.entry.queue}  {name}  {item.detail}",
            highlight=False,
            soft_wrap=True,
        )
    _exit_now()  # it may have held a Temporal client (see _exit_now)


@app.command()
def bounces() -> None:
    """Run the inbound SMTP server that takes email bounces (RFC 3464 DSNs)."""
    from bounces.server import run_bounces
    from herald.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, component="bounces")
    uvloop.run(run_bounces(settings))


@app.command()
def webhooks() -> None:
    """Run a webhook dispatcher: delivers status events to tenants' endpoints."""
    from herald.logs import configure_logging
    from webhooks.main import run_webhooks

    settings = get_settings()
    configure_logging(settings.log_level, component="webhooks")
    tune_gc()
    uvloop.run(run_webhooks(settings))
