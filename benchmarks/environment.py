"""A Herald of a benchmark's own: a file-backed Temporal dev server, provider sinks, a fresh
database, and the processes it asks for; plus CPU accounting per process (``CpuMeter``)."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.sql.expression import Executable
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from devtools.devserver import TemporalDevServer
from devtools.processes import ManagedProcess, herald_argv, wait_http
from devtools.sinks import Sinks
from herald.db import make_engine
from herald.migrate import drop_database, ensure_database, upgrade
from herald.ports import free_port
from herald.settings import Settings
from herald.temporal import channel_task_queue, connect

COMMANDS = {
    "api": ("api",),
    "core": ("worker", "--queue", "core"),
    "email": ("worker", "--queue", "email"),
    "sms": ("worker", "--queue", "sms"),
    "push": ("worker", "--queue", "push"),
    "bridge": ("bridge",),
    "webhooks": ("webhooks",),
}


def _stat(pid: int | str) -> tuple[str, list[str]] | None:
    """A process's name and the fields after it in ``/proc/<pid>/stat``; None once gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name, _, rest = raw.partition(" (")[2].rpartition(")")
    return name, rest.split()


def _ticks(fields: list[str], *, children: bool = False) -> int:
    """utime + stime, and with ``children`` the reaped children's too (stat fields 14-17)."""
    return sum(int(value) for value in fields[11 : 15 if children else 13])


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) a process has used so far; 0 once it is gone."""
    stat = _stat(pid) if pid is not None else None
    return _ticks(stat[1]) / os.sysconf("SC_CLK_TCK") if stat else 0.0


# Servers shared by the whole machine, by the name their processes run under.
SERVERS = {"postgres": "postgres", "rabbitmq": "beam.smp"}


def server_cpu_seconds(server: str) -> float:
    """CPU time all processes of a shared server (a key of ``SERVERS``) have used so far,
    exited ones included (their parent's reaped children: PostgreSQL's backends)."""
    total = 0
    for proc in Path("/proc").iterdir():
        stat = _stat(proc.name) if proc.name.isdigit() else None
        if stat and stat[0].startswith(SERVERS[server]):
            total += _ticks(stat[1], children=True)
    return total / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float:
    """CPU time (all but idle and iowait) the whole machine has used so far, over all cores.

    Next to the per-process numbers it shows what the rest (PostgreSQL, the benchmark's
    own client and sinks) costs.
    """
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def pid_of(process: ManagedProcess | TemporalDevServer) -> int | None:
    """The OS pid of a running child."""
    return process.process.pid if process.process is not None else None


class CpuMeter:
    """CPU time used from its creation on by each process in ``pids``, by the ``servers``
    (keys of ``SERVERS``), by this process (the load generator and the sinks) and by the
    whole machine; ``per_item`` turns it into milliseconds per item."""

    def __init__(self, pids: dict[str, int | None], servers: Iterable[str] = ("postgres",)):
        self.pids = dict(pids)
        self.servers = tuple(servers)
        self._before = self._read()

    def _read(self) -> dict[str, float]:
        return (
            {name: cpu_seconds(pid) for name, pid in self.pids.items()}
            | {server: server_cpu_seconds(server) for server in self.servers}
            | {"client_and_sinks": time.process_time(), "machine": machine_cpu_seconds()}
        )

    def per_item(self, count: int) -> dict[str, float]:
        """CPU milliseconds per item since the meter was made, by name."""
        now = self._read()
        return {name: (now[name] - before) * 1000 / count for name, before in self._before.items()}


@dataclass
class BenchHerald:
    """What a benchmark runs against."""

    work: Path
    server: TemporalDevServer
    sinks: Sinks
    settings: Settings
    processes: dict[str, ManagedProcess]

    async def start(self, *names: str, concurrency: int | None = None) -> dict[str, ManagedProcess]:
        """Start Herald processes by name: a key of ``COMMANDS``, or one with a suffix
        (``email-2``) for another process of that kind. ``concurrency`` is the
        ``--concurrency`` of the workers among them. Waits for the API if asked."""
        env = self.settings.as_env()
        for name in names:
            argv = COMMANDS[name.partition("-")[0]]
            if concurrency is not None and argv[0] == "worker":
                argv += ("--concurrency", str(concurrency))
            process = ManagedProcess(name, herald_argv(*argv), env, self.work)
            self.processes[name] = process.start()
        if "api" in names:
            await asyncio.to_thread(wait_http, f"http://127.0.0.1:{self.settings.api_port}/healthz")
        return self.processes

    async def stop(self, *names: str) -> None:
        """Stop processes started by ``start`` (gracefully: workers finish what they hold)."""
        for name in names:
            await asyncio.to_thread(self.processes.pop(name).stop)

    async def wait_pollers(self, queue: str, count: int, timeout: float = 60.0) -> None:
        """Wait until ``count`` worker processes poll the workflow task queue of ``queue``
        (a channel: its workers run its notifications), so that a measurement does not
        begin before a new worker works."""
        client = await connect(self.settings)
        request = DescribeTaskQueueRequest(
            namespace=self.settings.temporal_namespace,
            task_queue=TaskQueue(name=channel_task_queue(queue, self.settings.task_queue_prefix)),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
        async with asyncio.timeout(timeout):
            while len((await client.workflow_service.describe_task_queue(request)).pollers) < count:
                await asyncio.sleep(0.2)

    def pids(self) -> dict[str, int | None]:
        """The Temporal server's and every started process's pid, by name."""
        return {"temporal": pid_of(self.server)} | {
            name: pid_of(process) for name, process in self.processes.items()
        }


@asynccontextmanager
async def local_herald(name: str, **overrides: Any) -> AsyncIterator[BenchHerald]:
    """Set everything up under ``name``, tear it all down afterwards."""
    work = Path(tempfile.mkdtemp(prefix=f"herald-{name}-"))
    server = TemporalDevServer(work / "temporal.db", port=free_port(), headless=True).start()
    sinks = Sinks(smtp_port=free_port(), http_port=free_port()).start()
    run = uuid.uuid4().hex[:6]
    values: dict[str, Any] = {
        "database_url": f"postgresql+asyncpg://postgres@127.0.0.1:5432/herald_{name}_{run}",
        "temporal_address": server.address,
        "task_queue_prefix": f"{name}-{run}",
        "api_port": free_port(),
        "smtp_port": sinks.smtp_port,
        "sms_api_url": sinks.http_url,
        "push_api_url": sinks.http_url,
        "log_level": "WARNING",
    }
    settings = Settings(**(values | overrides))
    bench = BenchHerald(work, server, sinks, settings, {})
    try:
        await ensure_database(settings.database_url)
        await asyncio.to_thread(upgrade, settings.database_url)
        yield bench
    finally:
        for process in bench.processes.values():
            process.stop()
        sinks.stop()
        server.stop()
        await drop_database(settings.database_url)


async def until_none(
    settings: Settings, count: Executable, interval: float, timeout: float | None = None
) -> None:
    """Wait until the statement ``count`` (one number) says none are left, asking every
    ``interval`` seconds (for at most ``timeout``)."""
    engine = make_engine(settings, pool_size=1)
    try:
        async with asyncio.timeout(timeout):
            while True:
                async with engine.connect() as conn:
                    if not (await conn.execute(count)).scalar_one():
                        return
                await asyncio.sleep(interval)
    finally:
        await engine.dispose()
