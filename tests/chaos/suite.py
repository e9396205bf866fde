"""The chaos suite: submit notifications over REST and RabbitMQ while Herald's processes
are SIGKILLed, RabbitMQ and the Temporal server restart and the providers fail, then
check what Herald promises (no loss, no duplicate from Herald, PostgreSQL and Temporal
agree) notification by notification.

Everything runs on a Herald of its own: its own Temporal dev server (file-backed, so a
restart keeps its state), database, RabbitMQ vhost, task queues and provider sinks, so
it never disturbs another test run. Only RabbitMQ itself is shared with the machine: its
one restart is a brief ``stop_app``/``start_app``, and it is always started again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import subprocess
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowExecutionStatus

from devtools.devserver import TemporalDevServer
from devtools.processes import ManagedProcess, herald_argv
from devtools.sinks import Received, SinkRequest, Sinks
from herald.contracts import Channel, QueuedNotification, workflow_id_for
from herald.db import Notification, make_engine
from herald.migrate import drop_database, ensure_database, upgrade
from herald.ports import free_port
from herald.settings import Settings
from herald.temporal import connect
from tests.harness import (
    Stack,
    Tenant,
    new_run_id,
    new_tenant,
    producer_settings,
    rabbitmq_vhost,
)
from tests.harness import test_settings as settings_for_run

log = logging.getLogger("herald.chaos")

TERMINAL = {"sent", "delivered", "failed", "cancelled", "suppressed"}
CHANNELS = (Channel.email, Channel.sms, Channel.push)
_EMAIL_KEY = re.compile(r"<([^@>]+)@")


@dataclass
class ChaosConfig:
    """How big and how rough one run is."""

    size: int = 300
    kills_per_process: int = 1
    amqp: bool = True
    seed: int = 7
    users: int = 40
    opted_out_users: int = 4
    transient_rate: float = 0.3
    timeout_rate: float = 0.1
    settle_timeout: float = 300.0
    work_dir: Path = field(default_factory=lambda: Path(".herald/chaos"))

    @classmethod
    def full(cls, **overrides: Any) -> ChaosConfig:
        """The size the issue asks for: 2,000 notifications, two kills of each process."""
        values: dict[str, Any] = {
            "size": 2000,
            "kills_per_process": 2,
            "users": 100,
            "opted_out_users": 8,
            "settle_timeout": 900.0,
        }
        values.update(overrides)
        return cls(**values)


@dataclass
class Submitted:
    """What the load generator knows: the accepted ids and how each got in."""

    rest: dict[str, str] = field(default_factory=dict)  # Idempotency-Key -> id
    amqp: set[str] = field(default_factory=set)
    rest_retries: int = 0
    amqp_retries: int = 0

    @property
    def accepted(self) -> set[str]:
        """Every notification Herald accepted."""
        return set(self.rest.values()) | self.amqp


class ChaosRun:
    """One chaos run: build the stack, load it, break it, check it, tear it down."""

    def __init__(self, config: ChaosConfig) -> None:
        self.config = config
        self.random = random.Random(config.seed)
        self.run_id = new_run_id()
        self.dir = config.work_dir.resolve() / self.run_id
        self.events: list[tuple[float, str]] = []
        # When each process type was down: SIGKILL to restart for the Temporal server, the
        # instant of the SIGKILL for a Herald process (its in-flight work dies with it).
        self.outages: dict[str, list[Outage]] = defaultdict(list)
        self.kills: Counter[str] = Counter()
        self.restarts: Counter[str] = Counter()
        self.server: TemporalDevServer | None = None
        self.sinks: Sinks | None = None
        self.stack: Stack | None = None

    # --- the stack -------------------------------------------------------------------

    def start(self) -> Settings:
        """Temporal, sinks, database, vhost and the Herald processes of this run."""
        self.server = TemporalDevServer(
            self.dir / "temporal.db",
            port=free_port(),
            log_file=self.dir / "temporal.log",
            headless=True,
        ).start()
        self.sinks = Sinks(smtp_port=free_port(), http_port=free_port()).start()
        state = self.sinks.state
        state.transient_rate = self.config.transient_rate
        state.timeout_rate = self.config.timeout_rate
        state.timeout_seconds = 3.0  # past the provider timeout: the reply comes too late
        settings = settings_for_run(
            self.run_id,
            self.server.address,
            self.sinks,
            max_attempts=25,  # 40% failing attempts: a budget nothing exhausts
            send_timeout_seconds=6.0,
            provider_timeout_seconds=2.0,
            breaker_failure_threshold=8,
            breaker_reset_seconds=2.0,
            rate_limit_per_minute=10**6,
            worker_concurrency=50,
        )
        asyncio.run(ensure_database(settings.database_url))
        upgrade(settings.database_url)
        rabbitmq_vhost(f"herald-test-{self.run_id}", create=True)
        self.stack = Stack(settings, self.dir / "logs")
        if self.config.amqp and "bridge" not in self.stack.processes:
            self.stack.processes["bridge"] = ManagedProcess(
                "bridge", herald_argv("bridge"), settings.as_env(), self.dir / "logs"
            )
        self.stack.start()
        return settings

    def stop(self) -> None:
        """Stop everything this run started."""
        if self.stack is not None:
            self.stack.stop()
        if self.sinks is not None:
            self.sinks.stop()
        if self.server is not None:
            self.server.stop()
        rabbitmq_vhost(f"herald-test-{self.run_id}", create=False)
        if self.stack is not None:
            asyncio.run(drop_database(self.stack.settings.database_url))

    # --- load ------------------------------------------------------------------------

    async def _tenant_with_data(self) -> tuple[Tenant, list[str], dict[Channel, str]]:
        assert self.stack is not None
        tenant = await new_tenant(self.stack, f"chaos-{self.run_id}")
        users = []
        for index in range(self.config.users):
            opted_out = index < self.config.opted_out_users
            user = await tenant.user(
                preferences={"email": not opted_out, "sms": not opted_out, "push": not opted_out}
            )
            await tenant.device(user["id"])
            users.append(user["id"])
        templates = {
            Channel.email: await tenant.template("email", "<p>Hi {{ n }}</p>", "Note {{ n }}"),
            Channel.sms: await tenant.template("sms", "Note {{ n }}", None),
            Channel.push: await tenant.template("push", "Note {{ n }}", "Herald"),
        }
        return tenant, users, templates

    async def _submit_rest(
        self, tenant: Tenant, index: int, body: dict[str, Any], out: Submitted, deadline: float
    ) -> None:
        key = f"chaos-{self.run_id}-{index}"
        while time.monotonic() < deadline:
            try:
                response = await tenant.client.post(
                    "/v1/notifications", json=body, headers={"Idempotency-Key": key}, timeout=15
                )
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code in (200, 202):
                out.rest[key] = str(response.json()["id"])
                return
            if response is not None and response.status_code not in (409, 429, 500, 502, 503):
                raise AssertionError(
                    f"REST submission refused: {response.status_code} {response.text}"
                )
            out.rest_retries += 1
            await asyncio.sleep(0.5)

    async def _submit_amqp(
        self, producer: Any, notification: QueuedNotification, out: Submitted, deadline: float
    ) -> None:
        while time.monotonic() < deadline:
            try:
                await asyncio.wait_for(producer.publish(notification), 15)
            except Exception as err:  # broker restarting: publish again, same id
                log.info("publish failed, retrying: %s", err)
                out.amqp_retries += 1
                await asyncio.sleep(0.5)
                continue
            out.amqp.add(str(notification.id))
            return

    async def load(
        self,
        settings: Settings,
        window: float,
        setup: tuple[Tenant, list[str], dict[Channel, str]],
    ) -> Submitted:
        """Submit ``size`` notifications, paced over ``window`` seconds."""
        tenant, users, templates = setup
        out = Submitted()
        producer = None
        if self.config.amqp:
            from herald.producer import NotificationProducer

            as_producer = await producer_settings(settings, tenant.name)
            producer = NotificationProducer(settings=as_producer)
        pace = window / self.config.size
        deadline = time.monotonic() + window + 240
        tasks = []
        try:
            for index in range(self.config.size):
                channel = CHANNELS[index % 3]
                user = users[self.random.randrange(len(users))]
                body = {
                    "channel": channel.value,
                    "user_id": user,
                    "template": templates[channel],
                    "data": {"n": index},
                }
                if producer is not None and index % 2:
                    notification = QueuedNotification(id=uuid.uuid4(), tenant=tenant.name, **body)
                    tasks.append(
                        asyncio.create_task(
                            self._submit_amqp(producer, notification, out, deadline)
                        )
                    )
                else:
                    tasks.append(
                        asyncio.create_task(self._submit_rest(tenant, index, body, out, deadline))
                    )
                await asyncio.sleep(pace)
            await asyncio.gather(*tasks)
        finally:
            if producer is not None:
                await producer.close()
            await tenant.client.aclose()
        return out

    # --- chaos -----------------------------------------------------------------------

    def _note(self, what: str) -> None:
        self.events.append((time.time(), what))
        log.warning("chaos: %s", what)

    async def _kill(self, name: str) -> None:
        assert self.stack is not None
        process = self.stack.processes[name]
        before = time.time()
        process.kill()
        self.outages[name].append((before, time.time()))
        self.kills[name] += 1
        self._note(f"SIGKILL {name}")
        await asyncio.sleep(self.random.uniform(0.5, 1.5))
        process.start()

    async def _restart_temporal(self) -> None:
        assert self.server is not None
        down = time.time()
        try:
            self.server.stop(kill=True)
            self.restarts["temporal"] += 1
            self._note("SIGKILL temporal dev server")
            await asyncio.sleep(1.0)
            await asyncio.to_thread(self.server.start)
            self._note("temporal dev server back")
        finally:
            self.outages["temporal"].append((down, time.time()))

    async def _restart_rabbitmq(self) -> None:
        self.restarts["rabbitmq"] += 1
        self._note("rabbitmq stop_app")
        try:
            await asyncio.to_thread(_rabbitmqctl, "stop_app")
            await asyncio.sleep(1.0)
        finally:
            await asyncio.to_thread(_rabbitmqctl, "start_app")
            self._note("rabbitmq start_app")

    async def chaos(self, window: float) -> None:
        """Every disruption, shuffled and spread over ``window`` seconds."""
        assert self.stack is not None
        actions: list[Any] = [
            (self._kill, name)
            for name in self.stack.processes
            for _ in range(self.config.kills_per_process)
        ]
        actions.append((self._restart_temporal,))
        if self.config.amqp:
            actions.append((self._restart_rabbitmq,))
        self.random.shuffle(actions)
        gap = window / (len(actions) + 1)

        async def at(offset: float, action: Any, *args: Any) -> None:
            await asyncio.sleep(offset)
            await action(*args)

        # On a fixed schedule, so a slow restart (RabbitMQ) does not push the rest back.
        await asyncio.gather(
            *(at(gap * (n + 1), action, *args) for n, (action, *args) in enumerate(actions))
        )

    # --- checks ----------------------------------------------------------------------

    async def _statuses(self, engine: AsyncEngine, ids: set[str]) -> dict[str, dict[str, Any]]:
        wanted = [uuid.UUID(i) for i in ids]
        rows: dict[str, dict[str, Any]] = {}
        async with engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                found = await conn.execute(
                    select(Notification.id, Notification.status, Notification.attempts).where(
                        Notification.id.in_(wanted[start : start + 500])
                    )
                )
                for row in found:
                    rows[str(row.id)] = {"status": row.status, "attempts": row.attempts}
        return rows

    async def settle(self, engine: AsyncEngine, ids: set[str]) -> dict[str, dict[str, Any]]:
        """Wait until every accepted notification is terminal (or the timeout passes)."""
        deadline = time.monotonic() + self.config.settle_timeout
        while True:
            rows = await self._statuses(engine, ids)
            done = sum(1 for row in rows.values() if row["status"] in TERMINAL)
            if done == len(ids) or time.monotonic() > deadline:
                return rows
            await asyncio.sleep(2.0)

    async def agreement(
        self, client: Client, rows: dict[str, dict[str, Any]]
    ) -> list[tuple[str, str, str]]:
        """``(id, PostgreSQL status, Temporal's view)`` wherever the two differ."""
        gate = asyncio.Semaphore(20)
        mismatched: list[tuple[str, str, str]] = []

        async def check(notification_id: str) -> None:
            async with gate:
                handle = client.get_workflow_handle(workflow_id_for(notification_id))
                ours = rows[notification_id]["status"]
                try:
                    # The last status write is a step of the workflow's last task: a
                    # worker killed right after it finishes that task a little later.
                    for _ in range(60):
                        described = await handle.describe()
                        if described.status != WorkflowExecutionStatus.RUNNING:
                            break
                        await asyncio.sleep(1.0)
                    if described.status != WorkflowExecutionStatus.COMPLETED:
                        mismatched.append((notification_id, ours, str(described.status)))
                        return
                    result = await handle.result()
                except Exception as err:
                    mismatched.append((notification_id, ours, f"{type(err).__name__}: {err}"))
                    return
                status = result.get("status") if isinstance(result, dict) else None
                if status != ours:
                    mismatched.append((notification_id, ours, str(status)))

        await asyncio.gather(*(check(i) for i in rows))
        return mismatched

    def deliveries(self) -> list[tuple[str, str]]:
        """``(channel, idempotency key)`` of every message the sinks accepted."""
        assert self.sinks is not None
        return [(m.channel, _key(m)) for m in self.sinks.state.received()]

    async def verify(self, settings: Settings, out: Submitted, started: float) -> dict[str, Any]:
        """The JSON summary of the run."""
        engine = make_engine(settings, pool_size=4)
        try:
            accepted = out.accepted
            rows = await self.settle(engine, accepted)
            client = await connect(settings)
            mismatched = await self.agreement(client, rows)
        finally:
            await engine.dispose()
        await asyncio.sleep(4.0)  # let late (timed-out) provider replies land in the sinks
        statuses = Counter(row["status"] for row in rows.values())
        lost = sorted(i for i in accepted if i not in rows or rows[i]["status"] not in TERMINAL)
        deliveries = self.deliveries()
        per_key = Counter(key for _, key in deliveries)
        sent = {i for i, row in rows.items() if row["status"] in ("sent", "delivered")}
        duplicated = {key: n for key, n in per_key.items() if n > 1}
        raw_duplicates = sum(n - 1 for n in duplicated.values())
        assert self.sinks is not None
        unexplained = unexplained_copies(
            self.sinks.state.received(),
            self.sinks.state.requests,
            self.outages,
            provider_timeout=settings.provider_timeout_seconds,
        )
        unknown = sorted(set(per_key) - accepted)
        return {
            "suite": "chaos",
            "size": self.config.size,
            "accepted": len(accepted),
            "accepted_rest": len(out.rest),
            "accepted_amqp": len(out.amqp),
            "client_retries": {"rest": out.rest_retries, "amqp": out.amqp_retries},
            "kills": dict(sorted(self.kills.items())),
            "restarts": dict(sorted(self.restarts.items())),
            "provider_faults": {
                "transient_5xx": self.config.transient_rate,
                "timeouts": self.config.timeout_rate,
            },
            "terminal": sum(1 for row in rows.values() if row["status"] in TERMINAL),
            "lost": len(lost),
            "lost_ids": lost[:20],
            "statuses": dict(sorted(statuses.items())),
            "suppressed": statuses.get("suppressed", 0),
            "delivered_keys": len(per_key),
            "expected_deliveries": len(accepted) - statuses.get("suppressed", 0),
            "deliveries_match": set(per_key) == sent
            and len(per_key) == len(accepted) - statuses.get("suppressed", 0),
            "raw_deliveries": len(deliveries),
            "raw_duplicates": raw_duplicates,
            "duplicated_keys": len(duplicated),
            # Copies explained by a kill, a Temporal outage or a provider timeout.
            "explained_duplicates": raw_duplicates - sum(unexplained.values()),
            "unexplained_duplicates": sum(unexplained.values()),
            "unexplained_examples": sorted(unexplained)[:5],
            "unknown_keys": len(unknown),
            "agreement_mismatches": len(mismatched),
            "agreement_examples": mismatched[:5],
            "agreement": not mismatched and not lost,
            "duration_s": round(time.monotonic() - started, 1),
        }

    async def run_async(self, settings: Settings) -> dict[str, Any]:
        """Load and chaos at once, then the checks."""
        setup = await self._tenant_with_data()
        started = time.monotonic()
        window = max(20.0, self.config.size / 20)
        chaos = asyncio.create_task(self.chaos(window))
        out = await self.load(settings, window * 0.8, setup)
        await chaos
        return await self.verify(settings, out, started)


def _key(message: Received | SinkRequest) -> str:
    """The notification's key, whichever way the provider protocol carries it."""
    key = message.idempotency_key or ""
    match = _EMAIL_KEY.match(key)
    return match.group(1) if match else key


# A stretch of time (start, end, epoch seconds) during which a process was down.
Outage = tuple[float, float]


def unexplained_copies(
    copies: Iterable[Received],
    requests: Iterable[SinkRequest],
    outages: Mapping[str, Sequence[Outage]],
    *,
    provider_timeout: float,
) -> Counter[str]:
    """Per notification key, the duplicate copies at the sinks that no injected fault
    explains (a key absent from the answer was delivered once, or only explicably more).

    Of the copies of one key, the last to arrive is the delivery that counts. Every
    earlier copy came from an attempt that Temporal then ran again, which is legitimate
    only if that attempt may have looked failed:

    - the sink held its answer for at least the provider timeout (an injected timeout,
      or a provider that slow), so the sender gave up on it and retried; or
    - a SIGKILL of that channel's worker, or the Temporal server being down, overlapped
      the time from the copy's arrival at the sink to the next attempt of the same send
      reaching a sink: the attempt's outcome died with the worker or the server, and
      Temporal ran it again after the send timeout.

    Anything else (say, a retried notification sent twice with nothing killed in
    between) is a duplicate from Herald.
    """
    by_key: dict[str, list[Received]] = defaultdict(list)
    for copy in copies:
        by_key[_key(copy)].append(copy)
    arrivals: dict[str, list[float]] = defaultdict(list)
    for request in requests:
        arrivals[_key(request)].append(request.at)
    unexplained: Counter[str] = Counter()
    for key, found in by_key.items():
        if len(found) < 2:
            continue
        found.sort(key=_arrival)
        later = sorted(arrivals[key])
        for copy in found[:-1]:
            arrived = _arrival(copy)
            if copy.held >= provider_timeout:
                continue
            next_attempt = next((at for at in later if at > arrived), float("inf"))
            culprits = (f"worker-{copy.channel}", "temporal")
            if not any(
                start <= next_attempt and end >= arrived
                for culprit in culprits
                for start, end in outages.get(culprit, ())
            ):
                unexplained[key] += 1
    return unexplained


def _arrival(copy: Received) -> float:
    return copy.arrived_at if copy.arrived_at is not None else copy.at


def _rabbitmqctl(command: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", command], check=True, capture_output=True, timeout=120)


def run_chaos(config: ChaosConfig) -> dict[str, Any]:
    """Run the whole suite and return its summary."""
    run = ChaosRun(config)
    try:
        settings = run.start()
        return asyncio.run(run.run_async(settings))
    finally:
        run.stop()
