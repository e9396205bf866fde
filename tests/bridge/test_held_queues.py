"""Trouble you can see: a queue whose messages the bridge holds while Temporal is
unreachable turns red on the console's health page with the bridge's reason, ``/readyz``
names it (and stays 200), and ``herald doctor`` exits non-zero naming the queue. The
pure parts (what a bridge tracks, how a queue is judged from the bridges' reports) are
fast tests."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import OperationalError
from temporalio.service import RPCError, RPCStatusCode

from api.services.health import BridgeReport, QueueDepth, judge_ingest_queue
from bridge.queue_health import (
    REQUEUE_FORGET_SECONDS,
    IngestHealth,
    clean_reason,
    describe_outage,
    requeue_reason,
)
from devtools.processes import ManagedProcess
from herald.db import make_engine
from herald.tenants import ensure_tenant, issue_api_key
from tests.bridge.support import (
    FAST_RETRY,
    TcpProxy,
    bridge_process,
    herald_cli,
    publish_batch,
    wait_consumers,
    wait_statuses,
)
from tests.console.support import csrf_of
from tests.harness import Stack, Tenant

EMAIL = "herald.email"
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


class Clock:
    """A settable wall clock."""

    def __init__(self, at: float = 1_000_000.0) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


# --- What one bridge tracks --------------------------------------------------------


@pytest.mark.fast
def test_a_held_message_counts_from_its_publish_time_until_it_is_released() -> None:
    clock = Clock()
    health = IngestHealth([EMAIL], clock)
    health.hold(EMAIL, 1, "Temporal unavailable: RPCError: refused", published=clock.at - 30)
    health.hold(EMAIL, 2, "Temporal unavailable: RPCError: refused", published=None)
    clock.at += 10
    health.hold(EMAIL, 1, "Temporal unavailable: RPCError: still refused", published=None)
    report = health.report(EMAIL)
    assert (report.held, report.last_reason) == (2, "Temporal unavailable: RPCError: still refused")
    assert report.oldest_age(clock.at) == 40  # message 1's publish time, not a retry's
    health.release(EMAIL, 1)
    health.release(EMAIL, 2)
    assert health.report(EMAIL).held == 0
    assert health.report(EMAIL).oldest_age(clock.at) == 0


@pytest.mark.fast
def test_a_producer_clock_ahead_of_the_bridge_is_not_believed() -> None:
    clock = Clock()
    health = IngestHealth([EMAIL], clock)
    health.hold(EMAIL, 1, "x", published=clock.at + 3600)
    assert health.report(EMAIL).oldest_held_since == clock.at


@pytest.mark.fast
def test_a_queue_with_ready_messages_and_nothing_settled_is_stalled_until_one_settles() -> None:
    clock = Clock()
    health = IngestHealth([EMAIL], clock)
    health.sampled(EMAIL, 0)
    assert health.report(EMAIL).stalled_since is None
    health.sampled(EMAIL, 1194)
    clock.at += 90
    health.sampled(EMAIL, 1194)  # the first sample that saw them is when it began
    report = health.report(EMAIL)
    assert (report.ready, report.oldest_age(clock.at)) == (1194, 90)
    health.settled(EMAIL, "m-1")
    assert health.report(EMAIL).stalled_since is None
    health.sampled(EMAIL, 1193)  # draining: a new, young stall at most
    assert health.report(EMAIL).oldest_age(clock.at) == 0


@pytest.mark.fast
def test_a_requeued_message_is_held_until_settled_or_long_unseen() -> None:
    clock = Clock()
    health = IngestHealth([EMAIL], clock)
    health.requeued(EMAIL, "m-1", requeue_reason(KeyError("ada@example.com")), None)
    clock.at += 5
    health.requeued(EMAIL, "m-1", requeue_reason(KeyError("ada@example.com")), None)
    report = health.report(EMAIL)
    assert (report.held, report.oldest_age(clock.at)) == (1, 5)
    assert "KeyError" in (report.last_reason or "")
    assert "ada@example.com" not in (report.last_reason or "")  # never a message's data
    health.settled(EMAIL, "m-1")
    assert health.report(EMAIL).held == 0

    health.requeued(EMAIL, "m-2", "r", None)  # then taken by another bridge
    clock.at += REQUEUE_FORGET_SECONDS + 1
    assert health.report(EMAIL).held == 0


@pytest.mark.fast
def test_an_outage_is_described_by_service_without_a_statements_parameters() -> None:
    temporal = RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")
    assert describe_outage(temporal).startswith("Temporal unavailable: RPCError: connection")
    database = OperationalError(
        "INSERT INTO notifications VALUES (%s)", ("ada@example.com",), ConnectionError("gone")
    )
    described = describe_outage(database)
    assert described == "PostgreSQL unavailable: ConnectionError: gone"
    assert describe_outage(OSError("no route")).startswith("a service unavailable: OSError")
    assert clean_reason("a\x00b" + "x" * 2000) == "a\\x00b" + "x" * 494


# --- How the API judges a queue from the bridges' reports ---------------------------


def _report(bridge: str = "b1", **fields: Any) -> BridgeReport:
    values: dict[str, Any] = {
        "bridge": bridge,
        "queue": EMAIL,
        "held": 0,
        "oldest_held_since": None,
        "last_reason": None,
        "last_reason_at": None,
        "ready": 0,
        "stalled_since": None,
        "report_seconds": 15.0,
        "reported_at": NOW - timedelta(seconds=5),
    }
    return BridgeReport(**(values | fields))


def _ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


@pytest.mark.fast
def test_a_held_queue_is_a_problem_with_the_bridges_reason_and_the_oldest_age() -> None:
    held = _report(
        held=50,
        oldest_held_since=_ago(125),
        last_reason="Temporal unavailable: RPCError: refused",
        last_reason_at=_ago(2),
        ready=1144,
        stalled_since=_ago(100),
    )
    state = judge_ingest_queue(EMAIL, [held, _report("b2", ready=1144)], NOW, 60)
    assert state.kind == "held" and state.held == 50 and state.bridges == 2
    assert state.problem == (
        "50 held by the bridge, retrying; 1,144 ready, the oldest waiting 2 min 5 s: "
        "Temporal unavailable: RPCError: refused"
    )


@pytest.mark.fast
def test_a_queue_is_stale_only_when_no_bridge_drains_it_for_longer_than_the_setting() -> None:
    stalled = _report(ready=7, stalled_since=_ago(90))
    state = judge_ingest_queue(
        EMAIL, [stalled, _report("b2", ready=7, stalled_since=_ago(80))], NOW, 60
    )
    assert state.kind == "stale" and state.oldest_seconds == 80  # the later stall
    assert state.problem is not None and "no error reported" in state.problem
    draining = _report("b2", ready=7)
    assert judge_ingest_queue(EMAIL, [stalled, draining], NOW, 60).problem is None
    assert judge_ingest_queue(EMAIL, [stalled], NOW, 120).problem is None


@pytest.mark.fast
def test_a_bridge_that_stopped_reporting_is_ignored() -> None:
    gone = _report(held=3, oldest_held_since=_ago(900), reported_at=_ago(120), last_reason="x")
    state = judge_ingest_queue(EMAIL, [gone], NOW, 60)
    assert (state.problem, state.bridges) == (None, 0)


@pytest.mark.fast
def test_ready_messages_nobody_consumes_are_a_problem_and_an_empty_queue_is_not() -> None:
    unconsumed = judge_ingest_queue(EMAIL, [], NOW, 60, QueueDepth(EMAIL, 12, 0))
    assert (unconsumed.kind, unconsumed.problem) == (
        "unconsumed",
        "12 ready and no bridge consuming",
    )
    assert judge_ingest_queue(EMAIL, [], NOW, 60, QueueDepth(EMAIL, 0, 0)).problem is None
    other = judge_ingest_queue(EMAIL, [_report(queue="herald.sms", held=4)], NOW, 60)
    assert other.problem is None


# --- A held queue, seen from outside ------------------------------------------------


class Browser:
    """A console visitor over plain HTTP: the stack's session cookies are ``Secure``, which
    httpx keeps to https, so this one carries them itself, as a browser on localhost."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.cookies: dict[str, str] = {}

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        cookie = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        response = await self.client.request(
            method, path, headers={"Cookie": cookie} if cookie else {}, **kwargs
        )
        for header in response.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        return response

    async def get(self, path: str) -> httpx.Response:
        return await self.request("GET", path)

    async def sign_in(self, api_key: str) -> None:
        form = await self.get("/console/sign-in")
        signed_in = await self.request(
            "POST", "/console/sign-in", data={"api_key": api_key, "csrf_token": csrf_of(form.text)}
        )
        assert signed_in.status_code == 303, signed_in.text


_ROW = re.compile(r"<tr([^>]*)><td>herald\.email</td>(.*?)</tr>", re.S)


def _email_row(page: str) -> tuple[bool, str]:
    """Whether the health page's herald.email row is marked as a problem, and its text."""
    found = _ROW.search(page)
    assert found, "no herald.email row on the health page"
    return "queue-problem" in found.group(1), re.sub(r"<[^>]+>", " ", found.group(2))


async def _until(probe: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = await probe()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what} within {timeout}s"
        await asyncio.sleep(1)


@pytest.fixture
async def bridge_behind_cut_temporal(
    stack: Stack, bridge: ManagedProcess, run_dir: Path
) -> AsyncIterator[TcpProxy]:
    """The only bridge on the vhost, reaching Temporal through a proxy we can cut,
    reporting every second."""
    host, port = stack.settings.temporal_address.rsplit(":", 1)
    proxy = TcpProxy(host, int(port)).start()
    bridge.stop(timeout=20)
    process = bridge_process(
        stack.settings,
        run_dir / "logs",
        "bridge-held",
        temporal_address=f"127.0.0.1:{proxy.port}",
        backlog_sample_seconds=1.0,
        bridge_shutdown_seconds=5.0,
        **FAST_RETRY,
    ).start()
    try:
        await wait_consumers(stack.settings)
        yield proxy
    finally:
        with contextlib.suppress(OSError):  # already restored by the test
            proxy.restore()
        process.stop(timeout=30)
        proxy.stop()
        bridge.start()
        await wait_consumers(stack.settings)


async def test_a_queue_held_by_a_temporal_outage_is_red_with_the_reason_everywhere(
    stack: Stack, tenant: Tenant, bridge_behind_cut_temporal: TcpProxy
) -> None:
    proxy = bridge_behind_cut_temporal
    proxy.cut()
    ids = await publish_batch(stack.settings, tenant, 3)  # one per channel

    key = tenant.client.headers["Authorization"].removeprefix("Bearer ")
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as client:
        console = Browser(client)
        await console.sign_in(key)

        async def red() -> str | None:
            page = await console.get("/console/health")
            assert page.status_code == 200
            problem, text = _email_row(page.text)
            return text if problem and "Temporal unavailable" in text else None

        row = await _until(red, 60, "the health page's herald.email row never turned red")
        assert "held by the bridge" in row

        ready = await console.get("/readyz")
        assert ready.status_code == 200, ready.text  # the API still takes requests
        details = ready.json()
        assert details["status"] == "ready"
        assert "held by the bridge" in details["queues"][EMAIL]
        assert "Temporal unavailable" in details["queues"][EMAIL]

        doctor = await asyncio.to_thread(herald_cli, stack.settings, "doctor")
        assert doctor.returncode == 1, doctor.stdout + doctor.stderr
        assert f"problem: queue {EMAIL}: " in doctor.stdout
        assert "Temporal unavailable" in doctor.stdout

        proxy.restore()
        engine = make_engine(stack.settings, pool_size=1)
        try:
            await wait_statuses(engine, ids, "sent", timeout=120)
        finally:
            await engine.dispose()

        async def green() -> bool:
            return not _email_row((await console.get("/console/health")).text)[0]

        await _until(green, 60, "the herald.email row never turned back")


async def test_the_health_page_needs_a_signed_in_key_with_read(stack: Stack) -> None:
    engine = make_engine(stack.settings, pool_size=1)
    try:
        tenant = await ensure_tenant(engine, f"health-{time.monotonic_ns()}")
        admin_only, _ = await issue_api_key(engine, tenant.id, scopes=frozenset({"admin"}))
    finally:
        await engine.dispose()
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as client:
        console = Browser(client)
        signed_out = await console.get("/console/health?x=%00")
        assert signed_out.status_code == 303
        await console.sign_in(admin_only)
        refused = await console.get("/console/health")
        assert refused.status_code == 403 and "needs scope &#39;read&#39;" in refused.text
        assert "herald.email" not in refused.text
