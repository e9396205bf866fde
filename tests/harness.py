"""A whole Herald on real services for the tests: its own Temporal dev server, database,
RabbitMQ vhost, task queues, provider sinks, and the real API and worker processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx

from devtools.devserver import TemporalDevServer
from devtools.processes import ManagedProcess, assign_metrics_ports, herald_argv, wait_http
from devtools.sinks import Sinks
from herald.amqp import url_vhost
from herald.db import make_engine
from herald.ports import free_port
from herald.producers import add_producer
from herald.settings import Settings
from herald.tenants import create_api_key, set_rate_limit

TERMINAL = {"sent", "delivered", "failed", "cancelled", "suppressed"}


def rabbitmq_vhost(name: str, *, create: bool) -> None:
    """Create (or delete) a RabbitMQ vhost so test runs never share queues; deleting it
    deletes the producer users made for it too (``producer_settings``)."""
    if create:
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", name], check=False, capture_output=True)
        subprocess.run(
            ["rabbitmqctl", "-q", "set_permissions", "-p", name, "guest", ".*", ".*", ".*"],
            check=True,
            capture_output=True,
        )
    else:
        subprocess.run(
            ["rabbitmqctl", "-q", "delete_vhost", name], check=False, capture_output=True
        )
        users = subprocess.run(
            ["rabbitmqctl", "-q", "list_users", "--no-table-headers"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        for line in users.splitlines():
            user = line.split("\t", 1)[0]
            if user.startswith(f"{name}."):
                subprocess.run(
                    ["rabbitmqctl", "-q", "delete_user", user], check=False, capture_output=True
                )
        _producers.pop(name, None)


# The producer URL of each (tenant, test) per vhost, made once (``producer_settings``).
_producers: dict[str, dict[tuple[str, bool], str]] = {}


async def producer_settings(settings: Settings, tenant: str, *, test: bool = False) -> Settings:
    """``settings`` that publish as ``tenant``'s own producer, an AMQP user that may only
    write to ``herald.requests`` (a test producer's notifications never reach a
    provider). Made on first use per tenant and vhost; deleted with the vhost."""
    vhost = url_vhost(settings.amqp_url)
    made = _producers.setdefault(vhost, {})
    if (tenant, test) not in made:
        engine = make_engine(settings, pool_size=1)
        try:
            producer = await add_producer(
                engine,
                settings.amqp_url,
                tenant=tenant,
                amqp_user=f"{vhost}.{tenant}{'.test' if test else ''}",
                test=test,
            )
        finally:
            await engine.dispose()
        made[(tenant, test)] = producer.amqp_url
    return settings.model_copy(update={"amqp_url": made[(tenant, test)]})


def own_temporal(run_dir: Path, name: str) -> TemporalDevServer:
    """A started Temporal dev server of one test module's own, which it may stop or kill
    (file-backed under ``run_dir/name``, so a restart keeps its state)."""
    return TemporalDevServer(
        run_dir / name / "temporal.db",
        port=free_port(),
        headless=True,
        log_file=run_dir / name / "temporal.log",
    ).start()


def test_settings(run_id: str, temporal_address: str, sinks: Sinks, **overrides: Any) -> Settings:
    """Settings for one test run: fast retries, its own database, vhost and ports."""
    values: dict[str, Any] = {
        "database_url": f"postgresql+asyncpg://postgres@127.0.0.1:5432/herald_test_{run_id}",
        "amqp_url": f"amqp://guest:guest@127.0.0.1:5672/herald-test-{run_id}",
        "temporal_address": temporal_address,
        "task_queue_prefix": f"herald-test-{run_id}",
        "api_port": free_port(),
        "smtp_port": sinks.smtp_port,
        "sms_api_url": sinks.http_url,
        "push_api_url": sinks.http_url,
        # The chat channel's fakes: Slack's API, and webhook URLs on the sink.
        "chat_slack_api_url": f"{sinks.http_url}/slack",
        "chat_webhook_origins": sinks.http_url,
        "retry_initial_interval_seconds": 0.3,
        "retry_backoff_coefficient": 2.0,
        "retry_maximum_interval_seconds": 2.0,
        "send_timeout_seconds": 5.0,
        "provider_timeout_seconds": 3.0,
        "api_key_cache_seconds": 1.0,
        "log_level": "INFO",
        # Receipts and webhooks: this run's bounce server, callbacks to this run's API,
        # local webhook receivers, a short lease so a killed dispatcher's deliveries are
        # taken over within seconds, and quick retries.
        "bounce_smtp_port": free_port(),
        "webhooks_allow_private": True,
        "webhook_lease_seconds": 12.0,
        "webhook_poll_seconds": 0.2,
        "webhook_retry_initial_seconds": 0.5,
        "webhook_retry_maximum_seconds": 4.0,
        # The alerts' sampled gauges (queue depth, retrying notifications), every second.
        "backlog_sample_seconds": 1.0,
        # The test server's Temporal UI decodes payloads through the API without a token.
        "codec_allow_anonymous": True,
    }
    values.update(overrides)
    # Links in messages (one-click unsubscribe) point at this run's API.
    values.setdefault("public_url", f"http://127.0.0.1:{values['api_port']}")
    return Settings(**values)


class Stack:
    """The Herald processes of one test run, each restartable or killable."""

    def __init__(
        self,
        settings: Settings,
        log_dir: Path,
        queues: Iterable[str] = ("core", "email", "sms", "push", "inapp", "chat"),
        bridge: bool = False,
        receipts: bool = True,
    ) -> None:
        self.settings = settings
        env = settings.as_env()
        self.processes = {"api": ManagedProcess("api", herald_argv("api"), env, log_dir)}
        if bridge:
            self.processes["bridge"] = ManagedProcess("bridge", herald_argv("bridge"), env, log_dir)
        for queue in queues:
            self.processes[f"worker-{queue}"] = ManagedProcess(
                f"worker-{queue}", herald_argv("worker", "--queue", queue), env, log_dir
            )
        if receipts:
            # The email bounce server and the webhook dispatcher.
            for name in ("bounces", "webhooks"):
                self.processes[name] = ManagedProcess(name, herald_argv(name), env, log_dir)
        self.metrics_ports = assign_metrics_ports(self.processes.values(), free_port)

    @property
    def api_url(self) -> str:
        """Where the API listens."""
        return f"http://127.0.0.1:{self.settings.api_port}"

    def start(self) -> Stack:
        """Start every process and wait for the API to answer."""
        for process in self.processes.values():
            process.start()
        wait_http(f"{self.api_url}/healthz")
        return self

    def wait_ready(self, name: str) -> None:
        """Wait until a (re)started worker or bridge says it is ready on its metrics port."""
        wait_http(f"http://127.0.0.1:{self.metrics_ports[name]}/readyz")

    def stop(self) -> None:
        """Stop every process gracefully."""
        for process in self.processes.values():
            process.stop(timeout=10)


async def wait_for_status(
    client: httpx.AsyncClient,
    notification_id: str,
    statuses: Iterable[str] = TERMINAL,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Poll ``GET /v1/notifications/{id}`` until its status is one of ``statuses``."""
    wanted = set(statuses)
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = await client.get(f"/v1/notifications/{notification_id}")
        if response.status_code == 200:
            body = response.json()
            if body["status"] in wanted:
                return body
        await asyncio.sleep(0.2)
    raise AssertionError(
        f"notification {notification_id} stayed {body.get('status')!r}, wanted {wanted}"
    )


async def events(client: httpx.AsyncClient, notification_id: str) -> list[dict[str, Any]]:
    """The event log of one notification."""
    response = await client.get(f"/v1/notifications/{notification_id}/events")
    response.raise_for_status()
    return list(response.json())


def new_run_id() -> str:
    """A short id naming one test run's database, vhost and queues."""
    return uuid.uuid4().hex[:8]


class Tenant:
    """An API client for one tenant with helpers to create users and templates."""

    def __init__(self, client: httpx.AsyncClient, name: str) -> None:
        self.client = client
        self.name = name

    async def user(self, **fields: Any) -> dict[str, Any]:
        """Create a user with a unique id (and contact points unless given)."""
        user_id = fields.pop("id", f"u-{uuid.uuid4().hex[:10]}")
        body = {"id": user_id, "email": f"{user_id}@example.com", "phone": _phone(), **fields}
        response = await self.client.post("/v1/users", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def device(self, user_id: str, token: str | None = None) -> str:
        """Register a push token for a user."""
        token = token or f"tok-{uuid.uuid4().hex}"
        response = await self.client.post(
            f"/v1/users/{user_id}/devices", json={"token": token, "platform": "android"}
        )
        assert response.status_code == 201, response.text
        return token

    async def template(
        self,
        channel: str,
        body: str,
        subject: str | None = "Hello {{ name }}",
        key: str | None = None,
        locale: str = "en",
    ) -> str:
        """Create a template and return its key."""
        key = key or f"t-{uuid.uuid4().hex[:10]}"
        response = await self.client.post(
            "/v1/templates",
            json={
                "key": key,
                "channel": channel,
                "locale": locale,
                "subject": subject,
                "body": body,
            },
        )
        assert response.status_code == 201, response.text
        return key

    async def send(
        self,
        channel: str,
        user_id: str,
        template: str,
        data: dict[str, Any] | None = None,
        **extra: Any,
    ) -> str:
        """Submit a notification and return its id."""
        response = await self.client.post(
            "/v1/notifications",
            json={
                "channel": channel,
                "user_id": user_id,
                "template": template,
                "data": data or {},
                **extra,
            },
        )
        assert response.status_code == 202, response.text
        return str(response.json()["id"])


def _phone() -> str:
    return "+1555" + str(uuid.uuid4().int)[:7]


async def new_tenant(stack: Stack, name: str, rate_limit_per_minute: int | None = None) -> Tenant:
    """A tenant with a fresh API key on ``stack`` (and its own rate limit, if given)."""
    engine = make_engine(stack.settings, pool_size=1)
    try:
        key = await create_api_key(engine, name)
        if rate_limit_per_minute is not None:
            await set_rate_limit(engine, name, rate_limit_per_minute)
    finally:
        await engine.dispose()
    client = httpx.AsyncClient(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    return Tenant(client, name)


def worker_log_events(log_path: Path, message_part: str) -> list[dict[str, Any]]:
    """The JSON log lines of a Herald process whose message contains ``message_part``."""
    found = []
    for line in log_path.read_text(errors="replace").splitlines():
        if line.startswith("{") and message_part in line:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if message_part in str(entry.get("message", "")):
                found.append(entry)
    return found


# Debian's Chromium, driven by Playwright for the browser tests (Playwright never
# downloads a browser here), and the flags it runs with headless in CI.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
