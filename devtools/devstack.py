"""``herald dev``: the whole system on one machine, supervised until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import aio_pika
import httpx
from rich.console import Console
from sqlalchemy.engine import make_url

from devtools.devserver import TemporalDevServer
from devtools.processes import ManagedProcess, assign_metrics_ports, herald_argv
from devtools.sinks import Rule, Sinks
from herald.amqp import url_user
from herald.db import make_engine
from herald.migrate import ensure_database, server_connection, upgrade
from herald.ports import port_open
from herald.producers import ProducerError, map_producer, producer_tenant
from herald.search import setup_cluster
from herald.settings import Settings

console = Console()
PROCESS_TYPES = ("core", "email", "sms", "push", "inapp", "chat")
# Unless HERALD_METRICS_PORT says otherwise, the bridge and the workers serve /metrics
# from here on (bridge 9100, core 9101, ...).
DEV_METRICS_PORT = 9100
# The email bounce server and the webhook dispatcher (after the workers' metrics ports).
RECEIPT_PROCESSES = ("bounces", "webhooks")
# The tenant `herald publish` sends for under `herald dev` (README's examples use it).
DEV_TENANT = "demo"
# How long the banner waits for the API to answer before it is printed anyway.
API_START_SECONDS = 60.0


async def check_services(settings: Settings) -> list[str]:
    """What is unreachable among PostgreSQL and RabbitMQ, with how to start it."""
    problems = []
    url = make_url(settings.database_url)
    try:
        async with server_connection(settings.database_url, timeout=5):
            pass
    except Exception as err:
        problems.append(
            f"PostgreSQL at {url.host}:{url.port or 5432} is unreachable ({type(err).__name__}). "
            "Start it: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        )
    try:
        connection = await aio_pika.connect(settings.amqp_url, timeout=5)
        await connection.close()
    except Exception as err:
        problems.append(
            f"RabbitMQ at {make_url(settings.amqp_url.replace('amqp', 'postgresql', 1)).host} "
            f"is unreachable ({type(err).__name__}). Start it: rabbitmq-server -detached"
        )
    return problems


async def map_dev_producer(settings: Settings) -> str | None:
    """Map the AMQP user of ``HERALD_AMQP_URL`` (``guest`` by default) to the ``demo``
    tenant, so ``herald publish`` works out of the box; the user's name if it was not a
    producer before. Outside development, producers get their own users (``herald
    producer add``)."""
    user = url_user(settings.amqp_url)
    engine = make_engine(settings, pool_size=1)
    try:
        if await producer_tenant(engine, user) is not None:
            return None
        with contextlib.suppress(ProducerError):  # another process mapped it meanwhile
            await map_producer(engine, user, DEV_TENANT)
            return user
    finally:
        await engine.dispose()
    return None


def metrics_base(settings: Settings) -> int:
    """The first metrics port of the children (``HERALD_METRICS_PORT`` or 9100)."""
    return settings.metrics_port or DEV_METRICS_PORT


def children(settings: Settings, log_dir: Path) -> list[ManagedProcess]:
    """API, the RabbitMQ bridge and one worker per task queue."""
    env: dict[str, str] = {}
    if "HERALD_WEBHOOKS_ALLOW_PRIVATE" not in os.environ:
        # Local receivers (http://127.0.0.1:…) are what a developer points webhooks at.
        env["HERALD_WEBHOOKS_ALLOW_PRIVATE"] = "true"
    procs = [
        ManagedProcess("api", herald_argv("api"), env, log_dir),
        ManagedProcess("bridge", herald_argv("bridge"), env, log_dir),
    ]
    procs += [
        ManagedProcess(f"worker-{queue}", herald_argv("worker", "--queue", queue), env, log_dir)
        for queue in PROCESS_TYPES
    ]
    procs += [ManagedProcess(name, herald_argv(name), env, log_dir) for name in RECEIPT_PROCESSES]
    ports = iter(range(metrics_base(settings), metrics_base(settings) + len(procs)))
    assigned = assign_metrics_ports(procs, lambda: next(ports))
    console_env(procs[0], settings, assigned)
    return procs


def console_env(api: ManagedProcess, settings: Settings, metrics_ports: dict[str, int]) -> None:
    """The console under ``herald dev``: a session cookie over plain HTTP, the workers'
    metrics for its health page, and ``/codec`` open to the local Temporal UI (unless the
    environment says otherwise)."""
    urls = ",".join(
        f"http://{settings.metrics_host}:{port}/metrics"
        for name, port in metrics_ports.items()
        if name.startswith("worker-")
    )
    codec = (
        # The dev server's UI sends no credentials to the codec endpoint; a developer who
        # set a codec token (or the switch itself) keeps that.
        {}
        if {"HERALD_CODEC_TOKEN", "HERALD_CODEC_ALLOW_ANONYMOUS"} & set(os.environ)
        else {"HERALD_CODEC_ALLOW_ANONYMOUS": "true"}
    )
    api.env = {
        **codec,
        "HERALD_CONSOLE_SECURE_COOKIE": "false",
        "HERALD_CONSOLE_METRICS_URLS": urls,
        **{name: value for name, value in os.environ.items() if name.startswith("HERALD_CONSOLE_")},
        **api.env,
    }


def wait_for_api(
    api_url: str,
    api: ManagedProcess,
    stopping: Callable[[], bool],
    timeout: float = API_START_SECONDS,
) -> bool:
    """Wait until the API answers ``/healthz``, so the banner that follows is true when
    it is printed; False if it did not within ``timeout`` (or its process exited, or
    Ctrl-C came first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and api.alive and not stopping():
        try:
            if httpx.get(f"{api_url}/healthz", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def run_dev(settings: Settings, data_dir: str, *, with_sinks: bool) -> int:
    """Start everything, print where to look, supervise, stop cleanly on Ctrl-C."""
    problems = asyncio.run(check_services(settings))
    if problems:
        for problem in problems:
            console.print(f"[red]✗[/] {problem}")
        return 1
    root = Path(data_dir).resolve()
    log_dir = root / "logs"
    host, _, port = settings.temporal_address.rpartition(":")
    server: TemporalDevServer | None = None
    if port_open(host, int(port)):
        console.print(f"using the Temporal server already at {settings.temporal_address}")
        asyncio.run(setup_cluster(settings))
    else:
        server = TemporalDevServer(
            root / "temporal.db",
            port=int(port),
            ui_port=urlparse(settings.temporal_ui_url).port or 8233,
            log_file=log_dir / "temporal.log",
            ui_codec_endpoint=f"http://{settings.api_host}:{settings.api_port}/codec",
        )
        console.print("starting the Temporal dev server …")
        server.start()

    asyncio.run(ensure_database(settings.database_url))
    upgrade(settings.database_url)
    if mapped := asyncio.run(map_dev_producer(settings)):
        console.print(f"AMQP user {mapped} publishes for tenant {DEV_TENANT} (herald publish)")

    sinks = None
    if with_sinks and not port_open("127.0.0.1", settings.smtp_port):
        sinks = Sinks(
            smtp_port=settings.smtp_port,
            http_port=int(settings.sms_api_url.rsplit(":", 1)[1]),
            sms_token=settings.sms_auth_token.get_secret_value(),
            push_token=settings.push_token.get_secret_value(),
        ).start()
        # Like real providers, the sinks report back: Twilio-style status callbacks for
        # every SMS, and DSNs to the bounce server for addresses a rule bounces.
        sinks.state.default_callbacks = ["sent", "delivered"]
        sinks.state.bounce_relay = (settings.bounce_smtp_host, settings.bounce_smtp_port)
        sinks.state.add_rule(Rule(match="+bounce@", dsn="5.1.1"))

    procs = [proc.start() for proc in children(settings, log_dir)]
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    api_url = f"http://{settings.api_host}:{settings.api_port}"
    metrics_ports = sorted(
        int(proc.env["HERALD_METRICS_PORT"]) for proc in procs if "HERALD_METRICS_PORT" in proc.env
    )
    sink_line = (
        f"SMTP :{settings.smtp_port}, messages at {sinks.http_url}/_sink/messages"
        if sinks
        else "off"
    )
    if not wait_for_api(api_url, procs[0], lambda: stopping):
        console.print(
            f"[yellow]the API does not answer at {api_url}/healthz yet "
            f"(log: {procs[0].log_path})[/]"
        )
    console.print(
        "\n[bold green]Herald is running[/]\n"
        f"  API          {api_url}   (docs: {api_url}/docs)\n"
        f"  Console      {api_url}/console   (sign in with an API key)\n"
        f"  Inbox demo   {api_url}/inbox/demo   (<herald-inbox> live for user ada of tenant demo)\n"
        f"  Temporal UI  {settings.temporal_ui_url}\n"
        f"  Metrics      {api_url}/metrics; the other processes "
        f":{metrics_ports[0]}-{metrics_ports[-1]}/metrics\n"
        "  Bridge       herald.requests → herald.email/sms/push (herald publish, herald dead)\n"
        f"  Sinks        {sink_line}\n"
        f"  Receipts     bounces SMTP :{settings.bounce_smtp_port}, webhooks dispatcher "
        "(herald bounces, herald webhooks)\n"
        f"  Logs         {log_dir}\n"
        "  API key      herald apikey create --tenant demo\n"
        "Ctrl-C stops everything."
    )
    while not stopping:
        for proc in procs:
            if not proc.alive:
                console.print(f"[yellow]{proc.name} exited; restarting (log: {proc.log_path})[/]")
                proc.start()
        time.sleep(1)
    console.print("stopping …")
    for proc in procs:
        proc.stop()
    if sinks:
        sinks.stop()
    if server:
        server.stop()
    return 0
