"""The plain-queue service of a benchmark's own: a fresh database and RabbitMQ queue, its
API and consumer processes, and a client for it that fits ``benchmarks.load.measure``."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aio_pika
import asyncpg

from benchmarks.environment import pid_of
from benchmarks.load import RECIPIENT, Callers
from benchmarks.peer.config import SCHEMA, PeerConfig
from devtools.processes import ManagedProcess, wait_http
from herald.migrate import drop_database, ensure_database
from herald.ports import free_port

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


class PeerQueue:
    """The running plain-queue service, and callers that submit benchmark emails to it."""

    def __init__(self, config: PeerConfig, work: Path, callers: int, db: asyncpg.Pool) -> None:
        self.config = config
        self.db = db  # a small pool of the benchmark's own on the service's database
        self.api_url = f"http://127.0.0.1:{config.api_port}"
        self.processes = {
            name: ManagedProcess(
                f"peer-{name}",
                [sys.executable, "-m", f"benchmarks.peer.{name}", config.argument()],
                {},
                work,
            )
            for name in ("api", "consumer")
        }
        self.callers = Callers(self.api_url, callers)

    @staticmethod
    def request(n: int) -> dict[str, str]:
        """The body of ``POST /emails`` for benchmark email number ``n``: what Herald's
        benchmark template renders for the same ``n``."""
        return {"to": RECIPIENT, "subject": f"Order {n}", "html": f"<p>Order {n} shipped</p>"}

    async def submit(self, n: int) -> None:
        """Submit email number ``n`` (202)."""
        await self.callers.post("/emails", self.request(n), 202)

    async def sent(self) -> int:
        """How many emails the service has marked ``sent``."""
        count = await self.db.fetchval("SELECT count(*) FROM emails WHERE status = 'sent'")
        return int(count)

    def pids(self) -> dict[str, int | None]:
        """The API's and the consumer's pid, by name."""
        return {name: pid_of(process) for name, process in self.processes.items()}


@asynccontextmanager
async def local_peer(smtp_port: int, work: Path, callers: int) -> AsyncIterator[PeerQueue]:
    """Create the database and queue, start the processes, send one warm-up email; take
    everything down afterwards (processes stopped, queue deleted, database dropped)."""
    run = uuid.uuid4().hex[:6]
    database = f"postgresql://postgres@127.0.0.1:5432/peer_bench_{run}"
    database_url = database.replace("postgresql://", "postgresql+asyncpg://", 1)
    config = PeerConfig(
        database_dsn=database,
        amqp_url=AMQP_URL,
        queue=f"peer-bench-{run}",
        api_port=free_port(),
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
    )
    async with contextlib.AsyncExitStack() as stack:
        await ensure_database(database_url)
        stack.push_async_callback(drop_database, database_url)
        connection = await aio_pika.connect(AMQP_URL)
        stack.push_async_callback(connection.close)
        queue = await (await connection.channel()).declare_queue(config.queue, durable=True)
        stack.push_async_callback(queue.delete, if_unused=False, if_empty=False)
        db = await asyncpg.create_pool(database, min_size=1, max_size=2)
        stack.push_async_callback(db.close)
        await db.execute(SCHEMA)
        peer = PeerQueue(config, work, callers, db)
        for process in peer.processes.values():
            process.start()
            stack.callback(process.stop)
        await asyncio.to_thread(wait_http, f"{peer.api_url}/healthz")
        await stack.enter_async_context(peer.callers)
        await peer.submit(-1)
        while await peer.sent() < 1:
            await asyncio.sleep(0.1)
        yield peer
