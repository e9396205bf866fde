"""Operators reach notifications from the ``temporal`` CLI: Herald's search attributes
find them, a bare ``cancel`` signal stops them, and ``herald temporal setup`` registers
the attributes on a namespace that lacks them."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from devtools.devserver import TemporalDevServer, temporal_binary
from devtools.processes import herald_argv
from herald.contracts import workflow_id_for
from herald.search import SEARCH_ATTRIBUTE_TYPES
from herald.settings import Settings
from tests.harness import Tenant, wait_for_status


def run_ok(argv: list[str], env: dict[str, str] | None = None) -> str:
    """Run a command that must succeed and return what it printed."""
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def temporal_cli(server: TemporalDevServer, *args: str, namespace: str = "default") -> str:
    """Run ``temporal ARGS`` against the test server and return its output."""
    return run_ok([temporal_binary(), *args, "--address", server.address, "--namespace", namespace])


def listed(server: TemporalDevServer, query: str) -> set[str]:
    """Workflow ids ``temporal workflow list --query`` returns."""
    rows: list[dict[str, Any]] = json.loads(
        temporal_cli(server, "workflow", "list", "--query", query, "--output", "json")
    )
    return {row["execution"]["workflowId"] for row in rows}


async def eventually_listed(
    server: TemporalDevServer, query: str, expected: set[str], timeout: float = 60.0
) -> set[str]:
    """Visibility is eventually consistent: poll until ``expected`` all show up."""
    deadline = time.monotonic() + timeout
    while True:
        found = await asyncio.to_thread(listed, server, query)
        if expected <= found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.5)


async def test_workflow_list_by_channel_returns_exactly_the_sms_notifications(
    tenant: Tenant, temporal_server: TemporalDevServer
) -> None:
    user = await tenant.user()
    await tenant.device(user["id"])
    keys = {
        channel: await tenant.template(channel, "Hi {{ name }}", "Hello")
        for channel in ("sms", "email", "push")
    }
    sms = {await tenant.send("sms", user["id"], keys["sms"], {"name": "Ada"}) for _ in range(3)}
    others = {
        await tenant.send("email", user["id"], keys["email"], {"name": "Ada"}),
        await tenant.send("push", user["id"], keys["push"], {"name": "Ada"}),
    }
    for notification_id in sms | others:
        assert (await wait_for_status(tenant.client, notification_id))["status"] == "sent"
    sms_workflows = {workflow_id_for(i) for i in sms}
    other_workflows = {workflow_id_for(i) for i in others}

    # Exactly this tenant's SMS notifications ...
    mine = await eventually_listed(
        temporal_server, f'HeraldChannel="sms" AND HeraldTenant="{tenant.name}"', sms_workflows
    )
    assert mine == sms_workflows
    # ... and the bare channel filter the README shows: every SMS, nothing else.
    every_sms = await eventually_listed(temporal_server, 'HeraldChannel="sms"', sms_workflows)
    assert sms_workflows <= every_sms
    assert not every_sms & other_workflows
    # A clean send has no status in the UI: completed, with none, is sent (every other
    # notification shows one, the one it ended with).
    assert await eventually_listed(
        temporal_server,
        f'ExecutionStatus="Completed" AND HeraldStatus IS NULL AND HeraldTenant="{tenant.name}"',
        sms_workflows | other_workflows,
    ) == (sms_workflows | other_workflows)
    sent = f'HeraldStatus="sent" AND HeraldTenant="{tenant.name}"'
    assert not await asyncio.to_thread(listed, temporal_server, sent)


async def test_cancel_signal_from_the_temporal_cli_ends_the_notification_cancelled(
    tenant: Tenant, temporal_server: TemporalDevServer
) -> None:
    user = await tenant.user()
    key = await tenant.template("sms", "Later, {{ name }}", None)
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    notification_id = await tenant.send("sms", user["id"], key, {"name": "Ada"}, send_at=later)
    await wait_for_status(tenant.client, notification_id, {"scheduled"})

    workflow_id = workflow_id_for(notification_id)
    await asyncio.to_thread(
        temporal_cli,
        temporal_server,
        "workflow",
        "signal",
        "--workflow-id",
        workflow_id,
        "--name",
        "cancel",
    )

    final = await wait_for_status(tenant.client, notification_id)
    assert final["status"] == "cancelled"
    shown = json.loads(
        await asyncio.to_thread(
            temporal_cli,
            temporal_server,
            "workflow",
            "describe",
            "--workflow-id",
            workflow_id,
            "--output",
            "json",
        )
    )
    assert shown["workflowExecutionInfo"]["status"] == "WORKFLOW_EXECUTION_STATUS_COMPLETED"
    assert await eventually_listed(
        temporal_server, f'WorkflowId="{workflow_id}" AND HeraldStatus="cancelled"', {workflow_id}
    ) == {workflow_id}


def test_temporal_setup_registers_the_search_attributes_once(
    temporal_server: TemporalDevServer, settings: Settings
) -> None:
    namespace = f"herald-setup-{uuid.uuid4().hex[:8]}"
    temporal_cli(temporal_server, "operator", "namespace", "create", namespace=namespace)
    env = {**settings.as_env(), "HERALD_TEMPORAL_NAMESPACE": namespace}

    def setup() -> str:
        return run_ok(herald_argv("temporal", "setup"), env)

    first = setup()
    assert "registered" in first and "HeraldStatus" in first, first
    assert "already registered" in setup()
    shown = temporal_cli(
        temporal_server, "operator", "search-attribute", "list", namespace=namespace
    )
    for name, kind in SEARCH_ATTRIBUTE_TYPES.items():
        assert any(line.split()[:2] == [name, kind] for line in shown.splitlines()), shown
