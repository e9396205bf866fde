"""``herald doctor``: a table of every check, exit 0 when all is well, 1 naming each
problem. (A queue held by an outage making it exit 1 is in tests/bridge/
test_held_queues.py, with the outage.)"""

from __future__ import annotations

import asyncio
import io
import time

import pytest
from rich.console import Console

from cli.doctor import Finding, show
from devtools.processes import ManagedProcess
from tests.bridge.support import herald_cli
from tests.harness import Stack


def _shown(findings: list[Finding]) -> str:
    out = io.StringIO()
    show(findings, Console(file=out, width=120))
    return out.getvalue()


@pytest.mark.fast
def test_each_problem_is_named_on_a_line_of_its_own() -> None:
    text = _shown(
        [
            Finding("postgresql", "", True, "ok"),
            Finding("queue", "herald.email", False, "3 held by the bridge, retrying: [/]x"),
            Finding("pollers", "herald-sms (activity)", False, "no worker polls"),
        ]
    )
    # A reason is text, never markup (the table would fail on "[/]").
    assert "problem: queue herald.email: 3 held by the bridge, retrying: [/]x" in text
    assert "problem: pollers herald-sms (activity): no worker polls" in text
    assert "all is well" not in text


@pytest.mark.fast
def test_all_is_well_when_nothing_failed() -> None:
    text = _shown([Finding("api", "http://x/readyz", True, "ready")])
    assert "all is well" in text and "problem:" not in text


async def test_doctor_exits_0_on_a_healthy_deployment(stack: Stack, bridge: ManagedProcess) -> None:
    # Earlier tests of the session may leave a moment of trouble behind (a queue the
    # bridge is still draining): a healthy deployment is one doctor finds well soon.
    deadline = time.monotonic() + 60
    while True:
        done = await asyncio.to_thread(herald_cli, stack.settings, "doctor")
        if done.returncode == 0 or time.monotonic() > deadline:
            break
        await asyncio.sleep(2)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all is well" in done.stdout
    for checked in ("postgresql", "temporal", "rabbitmq", "herald.email", "-core"):
        assert checked in done.stdout, checked


async def test_doctor_exits_1_naming_an_api_it_cannot_reach(stack: Stack) -> None:
    done = await asyncio.to_thread(
        herald_cli, stack.settings, "doctor", "--api", "http://127.0.0.1:9"
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "problem: api http://127.0.0.1:9/readyz: unreachable" in done.stdout
