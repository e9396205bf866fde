"""A notification whose provider keeps failing is easy to find: ``herald stuck`` lists it
with its last error and a UI link, and the Temporal UI (driven by a real headless
Chromium) shows it under ``HeraldStatus="retrying"`` with the error on its page."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from temporalio.client import Client

from devtools.devserver import TemporalDevServer
from devtools.processes import herald_argv
from devtools.sinks import Rule, Sinks
from herald.contracts import workflow_id_for
from herald.ports import free_port
from herald.settings import Settings
from herald.temporal import connect
from tests.harness import CHROMIUM, CHROMIUM_ARGS, Stack, Tenant, wait_for_status

LAST_ERROR = "HTTP 503: sink answered 503"
UI_FILTER = 'HeraldStatus="retrying"'


@pytest.fixture(scope="module")
def slow_retry_stack(settings: Settings, run_dir: Path) -> Iterator[Stack]:
    """An API with core and SMS workers whose provider retries wait two minutes, so a
    notification whose provider fails stays ``retrying`` while the test looks at it."""
    slow = settings.model_copy(
        update={
            "api_port": free_port(),
            "task_queue_prefix": f"{settings.task_queue_prefix}-slow",
            "retry_initial_interval_seconds": 120.0,
            "retry_maximum_interval_seconds": 120.0,
        }
    )
    running = Stack(slow, run_dir / "logs-slow-retry", queues=("core", "sms")).start()
    yield running
    running.stop()


@pytest.fixture
async def patient(tenant: Tenant, slow_retry_stack: Stack) -> AsyncIterator[Tenant]:
    """The test's tenant, talking to the slow-retry API."""
    client = httpx.AsyncClient(
        base_url=slow_retry_stack.api_url, headers=dict(tenant.client.headers), timeout=30
    )
    yield Tenant(client, tenant.name)
    await client.aclose()


@pytest.fixture
async def temporal(settings: Settings) -> AsyncIterator[Client]:
    """A Temporal client for this run."""
    yield await connect(settings)


async def start_retrying(tenant: Tenant, sinks: Sinks, temporal: Client) -> str:
    """An SMS whose provider answers 503 until cancelled; returns its id once Temporal's
    visibility says ``retrying``."""
    user = await tenant.user()
    sinks.state.add_rule(Rule(match=user["phone"], always=503))
    key = await tenant.template("sms", "Your code is {{ code }}", None)
    notification_id = await tenant.send("sms", user["id"], key, {"code": "4711"})
    await wait_for_status(tenant.client, notification_id, {"retrying"})
    query = f'WorkflowId="{workflow_id_for(notification_id)}" AND HeraldStatus="retrying"'
    deadline = time.monotonic() + 60
    while not [w async for w in temporal.list_workflows(query)]:
        assert time.monotonic() < deadline, "visibility never said retrying"
        await asyncio.sleep(0.3)
    return notification_id


async def cancel(tenant: Tenant, notification_id: str) -> None:
    """Stop the retrying notification so it leaves nothing running."""
    response = await tenant.client.post(f"/v1/notifications/{notification_id}/cancel")
    assert response.status_code == 202, response.text
    assert (await wait_for_status(tenant.client, notification_id))["status"] == "cancelled"


async def test_herald_stuck_lists_a_retrying_notification_with_last_error_and_ui_link(
    patient: Tenant,
    sinks: Sinks,
    temporal: Client,
    settings: Settings,
    temporal_server: TemporalDevServer,
) -> None:
    notification_id = await start_retrying(patient, sinks, temporal)
    env = {**settings.as_env(), "HERALD_TEMPORAL_UI_URL": temporal_server.ui_url}

    def stuck(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            herald_argv("stuck", *args),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    await asyncio.sleep(1.5)
    done = await asyncio.to_thread(stuck, "--older-than", "1s", "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["id"]: row for row in map(json.loads, done.stdout.splitlines())}
    row = rows[notification_id]
    assert row["status"] == "retrying"
    assert row["channel"] == "sms"
    assert row["tenant"] == patient.name
    assert row["attempts"] >= 1
    assert LAST_ERROR in (row["last_error"] or ""), row
    workflow_id = workflow_id_for(notification_id)
    assert row["ui_url"].startswith(
        f"{temporal_server.ui_url}/namespaces/default/workflows/{workflow_id}/"
    )

    human = await asyncio.to_thread(stuck, "--older-than", "1s")
    assert human.returncode == 0, human.stderr
    assert notification_id in human.stdout and LAST_ERROR in human.stdout
    assert row["ui_url"] in human.stdout.replace("\n", "")

    # Too young to count as stuck with the default threshold.
    default = await asyncio.to_thread(stuck, "--json")
    assert notification_id not in default.stdout
    await cancel(patient, notification_id)


@pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)",
)
async def test_temporal_ui_lists_retrying_notifications_and_shows_the_last_error(
    patient: Tenant,
    sinks: Sinks,
    temporal: Client,
    temporal_server: TemporalDevServer,
    run_dir: Path,
) -> None:
    from playwright.async_api import async_playwright

    notification_id = await start_retrying(patient, sinks, temporal)
    workflow_id = workflow_id_for(notification_id)
    ui = temporal_server.ui_url
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        page = await browser.new_page(viewport={"width": 1600, "height": 1000})
        try:
            await page.goto(f"{ui}/namespaces/default/workflows?query={quote(UI_FILTER)}")
            link = page.get_by_role("link", name=workflow_id)
            await link.first.wait_for(timeout=60_000)
            await page.screenshot(path=str(run_dir / "ui-retrying-list.png"))

            await link.first.click()
            await page.get_by_text("Pending Activities").first.click()
            await page.get_by_text(LAST_ERROR).first.wait_for(timeout=60_000)
            await page.screenshot(path=str(run_dir / "ui-retrying-workflow.png"), full_page=True)
            await page.get_by_text("User Metadata").first.click()
            # The UI renders the summary (markdown) in a sandboxed frame.
            summary = page.frame_locator("iframe").first.get_by_text("sms · template")
            await summary.first.wait_for(timeout=30_000)
            await page.screenshot(path=str(run_dir / "ui-summary.png"), full_page=True)
        except Exception:
            await page.screenshot(path=str(run_dir / "ui-failure.png"), full_page=True)
            raise
        finally:
            await browser.close()
    await cancel(patient, notification_id)
