"""A Herald of a benchmark's own: a file-backed Temporal dev server, provider sinks, a fresh
database, and the processes it asks for; plus CPU accounting per process."""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.devserver import TemporalDevServer
from devtools.processes import ManagedProcess, herald_argv, wait_http
from devtools.sinks import Sinks
from herald.migrate import drop_database, ensure_database, upgrade
from herald.ports import free_port
from herald.settings import Settings

COMMANDS = {
    "api": ("api",),
    "core": ("worker", "--queue", "core"),
    "email": ("worker", "--queue", "email"),
    "sms": ("worker", "--queue", "sms"),
    "push": ("worker", "--queue", "push"),
    "bridge": ("bridge",),
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


def postgres_cpu_seconds() -> float:
    """CPU time all PostgreSQL processes have used so far, exited backends included (the
    postmaster's reaped children)."""
    total = 0
    for proc in Path("/proc").iterdir():
        stat = _stat(proc.name) if proc.name.isdigit() else None
        if stat and stat[0].startswith("postgres"):
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


@dataclass
class BenchHerald:
    """What a benchmark runs against."""

    work: Path
    server: TemporalDevServer
    sinks: Sinks
    settings: Settings
    processes: dict[str, ManagedProcess]

    async def start(self, *names: str) -> dict[str, ManagedProcess]:
        """Start Herald processes by name (see ``COMMANDS``); waits for the API if asked."""
        env = self.settings.as_env()
        for name in names:
            process = ManagedProcess(name, herald_argv(*COMMANDS[name]), env, self.work)
            self.processes[name] = process.start()
        if "api" in names:
            await asyncio.to_thread(wait_http, f"http://127.0.0.1:{self.settings.api_port}/healthz")
        return self.processes

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
