"""The load the benchmarks put on a system: kept-open HTTP callers in a closed loop (at most
N requests open, the next one sent when one is answered), requests on a fixed schedule in
an open loop, and Herald's API set up for benchmark emails (``LoadGenerator``).

aiohttp rather than httpx: the load generator shares the two cores with what it measures,
and httpx costs about six times its CPU per request (0.6 ms against 0.1 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from sqlalchemy import func, select

from benchmarks.environment import CpuMeter
from devtools.sinks import Sinks
from herald.db import Notification, make_engine
from herald.settings import Settings
from herald.tenants import create_api_key

# The benchmark recipient: a fault or delay rule on the sinks matching its domain touches
# nothing but the benchmark's own emails.
RECIPIENT = "bench@herald-bench.example"


async def closed_loop(count: int, concurrency: int, job: Callable[[int], Awaitable[Any]]) -> None:
    """Run ``job(0)`` … ``job(count - 1)``, at most ``concurrency`` at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await job(i)

    await asyncio.gather(*(one(i) for i in range(count)))


@dataclass(frozen=True)
class Answer:
    """One request of an open loop: its latency counted from when it was due, and the
    answer (``status`` None: none came, e.g. a timeout or a refused connection)."""

    latency: float
    status: int | None
    retry_after: bool = False
    body: Any = None


async def open_loop(
    rate: float, seconds: float, request: Callable[[int], Awaitable[Answer]]
) -> tuple[list[Answer], float]:
    """Send ``rate * seconds`` requests, the i-th one ``i / rate`` seconds after the start
    whatever became of the earlier ones, each in a task of its own.

    ``request(i)`` returns its answer with ``latency`` 0; the latency filled in here runs
    from the request's scheduled time, so time it spent waiting (for a connection, for
    this process's event loop) counts as well: a slow answer cannot hide the requests
    that should have followed it. Also returns the seconds from the start to the last
    answer.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def one(i: int, due: float) -> Answer:
        answer = await request(i)
        return Answer(loop.time() - due, answer.status, answer.retry_after, answer.body)

    tasks = []
    for i in range(round(rate * seconds)):
        due = started + i / rate
        if due > loop.time():
            await asyncio.sleep(due - loop.time())
        tasks.append(asyncio.create_task(one(i, due)))
    answers = await asyncio.gather(*tasks)
    return list(answers), loop.time() - started


class Callers:
    """``count`` callers of one HTTP service, each on one kept-open connection; at most
    ``count`` requests are in flight at once."""

    def __init__(self, base_url: str, count: int, headers: dict[str, str] | None = None) -> None:
        self.base_url = base_url
        self.count = count
        self.headers = headers or {}
        self._stack = contextlib.AsyncExitStack()
        self._idle: asyncio.Queue[aiohttp.ClientSession] = asyncio.Queue()

    async def __aenter__(self) -> Callers:
        for _ in range(self.count):
            self._idle.put_nowait(
                await self._stack.enter_async_context(
                    aiohttp.ClientSession(
                        base_url=self.base_url,
                        headers=self.headers,
                        connector=aiohttp.TCPConnector(limit=1),
                        timeout=aiohttp.ClientTimeout(total=60),
                    )
                )
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def post(self, path: str, body: dict[str, Any], status: int) -> dict[str, Any]:
        """POST ``body`` as JSON; the answer must have ``status``."""
        caller = self._idle.get_nowait()  # never empty: at most ``count`` at once
        try:
            async with caller.post(path, json=body) as response:
                answer: dict[str, Any] = await response.json()
                assert response.status == status, answer
                return answer
        finally:
            self._idle.put_nowait(caller)


class EmailService(Protocol):
    """A system that takes email requests and records each one it sent."""

    async def submit(self, n: int) -> None:
        """Submit email number ``n``; returns once the system has accepted it."""

    async def sent(self) -> int:
        """How many emails the system has recorded as sent so far."""


def delivered_emails(sinks: Sinks) -> int:
    """Distinct emails the SMTP sink has received (by Message-ID)."""
    return len({m.message_id for m in sinks.state.received("email")})


@dataclass(frozen=True)
class Run:
    """One closed-loop measurement: rates per second and CPU ms per email by process."""

    per_second: float
    accept_per_second: float
    cpu_ms: dict[str, float]


async def measure(
    service: EmailService,
    sinks: Sinks,
    count: int,
    concurrency: int,
    pids: dict[str, int | None],
    servers: tuple[str, ...] = ("postgres",),
) -> Run:
    """Submit ``count`` emails with ``concurrency`` callers in a closed loop; the rate runs
    from the first submission to the last email recorded as sent, and every one of them
    must have reached the SMTP sink. CPU is metered for ``pids`` and ``servers`` (see
    ``CpuMeter``)."""
    sent, delivered = await service.sent(), delivered_emails(sinks)
    meter = CpuMeter(pids, servers)
    started = time.perf_counter()
    await closed_loop(count, concurrency, service.submit)
    accepted = time.perf_counter() - started
    while await service.sent() < sent + count:
        await asyncio.sleep(0.2)
    elapsed = time.perf_counter() - started
    cpu_ms = meter.per_item(count)
    arrived = delivered_emails(sinks) - delivered
    assert arrived == count, f"{arrived} of {count} emails reached the SMTP server"
    return Run(count / elapsed, count / accepted, cpu_ms)


class LoadGenerator:
    """Callers that submit emails through Herald's API (see ``Callers``).

    Set up once per Herald (API key, user, template, one warm-up email); ``rate`` can then
    be measured any number of times.
    """

    def __init__(self, settings: Settings, sinks: Sinks, concurrency: int) -> None:
        self.settings = settings
        self.sinks = sinks
        self.concurrency = concurrency
        self.api_url = f"http://127.0.0.1:{settings.api_port}"
        self.api_key = ""
        self._stack = contextlib.AsyncExitStack()
        self._callers: Callers | None = None
        self._engine = make_engine(settings, pool_size=2)

    async def __aenter__(self) -> LoadGenerator:
        self._stack.push_async_callback(self._engine.dispose)
        self.api_key = await create_api_key(self._engine, f"bench-{uuid.uuid4().hex[:6]}")
        self._callers = await self._stack.enter_async_context(
            Callers(self.api_url, self.concurrency, {"Authorization": f"Bearer {self.api_key}"})
        )
        await self._callers.post("/v1/users", {"id": "bench", "email": RECIPIENT}, 201)
        template = {
            "key": "bench",
            "channel": "email",
            "subject": "Order {{ n }}",
            "body": "<p>Order {{ n }} shipped</p>",
        }
        await self._callers.post("/v1/templates", template, 201)
        await self.submit(-1)
        while delivered_emails(self.sinks) < 1:
            await asyncio.sleep(0.1)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    @staticmethod
    def request(n: int) -> dict[str, Any]:
        """The body of ``POST /v1/notifications`` for benchmark email number ``n``."""
        return {"channel": "email", "user_id": "bench", "template": "bench", "data": {"n": n}}

    async def submit(self, n: int) -> None:
        """Submit email number ``n`` (202)."""
        assert self._callers is not None, "use LoadGenerator as an async context manager"
        await self._callers.post("/v1/notifications", self.request(n), 202)

    async def sent(self, ids: list[str] | None = None) -> int:
        """How many notifications (of ``ids``, if given) are ``sent``."""
        query = select(func.count()).where(Notification.status == "sent")
        if ids is not None:
            query = query.where(Notification.id.in_([uuid.UUID(i) for i in ids]))
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def rate(
        self, count: int, pids: dict[str, int | None], cpu_ms: dict[str, float]
    ) -> dict[str, float]:
        """Notifications per second from the first submission to the last ``sent`` (see
        ``measure``; CPU ms per notification go into ``cpu_ms`` as ``herald.<name>``)."""
        run = await measure(self, self.sinks, count, self.concurrency, pids)
        cpu_ms.update({f"herald.{name}": ms for name, ms in run.cpu_ms.items()})
        return {"per_second": run.per_second, "accept_per_second": run.accept_per_second}
