"""The console's flow pages against the real app in this process on a real PostgreSQL
database (nothing here reaches Temporal): the flows list, a flow's versions and steps in
words, runs with filters and pages, and a run's page with its one timeline of step
transitions and notification events. Runs and events are written as the workers write
them (``herald.flows.store``, ``herald.statuslog``)."""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn

from api.console.pages.flows import condition_words, duration, step_words
from api.main import create_app
from herald import statuslog, submission
from herald.contracts import Channel, NotificationRequest, Status, StatusEvent
from herald.db import make_engine
from herald.flows import store
from herald.flows.definition import parse_flow
from herald.flows.models import (
    RunIdentity,
    RunProgress,
    RunStatus,
    StepState,
    StepStatus,
    step_notification_id,
)
from herald.ports import free_port
from herald.settings import Settings
from herald.tenants import ensure_tenant, issue_api_key
from tests.api.in_process import in_process_client, in_process_settings, migrated_database
from tests.console.support import sign_in
from tests.harness import CHROMIUM, CHROMIUM_ARGS, new_run_id

ONBOARDING = {
    "name": "Onboarding",
    "category": "lifecycle",
    "steps": [
        {
            "id": "first",
            "type": "send",
            "channel": "email",
            "template": "welcome",
            "fallback": ["sms"],
        },
        {"id": "pause", "type": "delay", "seconds": 3600},
        {
            "id": "seen",
            "type": "wait",
            "step": "first",
            "for": "delivered",
            "timeout_seconds": 3600,
        },
        {
            "id": "plan",
            "type": "branch",
            "if": {
                "all": [
                    {"path": "data.plan", "op": "eq", "value": "pro"},
                    {"not": {"path": "recipient.phone", "op": "exists"}},
                ]
            },
            "then": [{"id": "tips", "type": "send", "channel": "email", "template": "tips"}],
            "else": [{"id": "nudge", "type": "send", "channel": "push", "template": "nudge"}],
        },
    ],
}


@pytest.fixture(scope="module")
def database() -> Iterator[Settings]:
    settings = in_process_settings(api_key_cache_seconds=300.0, console_secure_cookie=False)
    with migrated_database(settings) as made:
        yield made


@pytest.fixture
async def client(database: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process_client(database) as made:
        yield made


@dataclass
class Seeded:
    live_key: str
    test_key: str
    narrow_key: str  # admin and send only: no read
    run_id: uuid.UUID
    test_run_id: uuid.UUID
    theirs: uuid.UUID
    notification_id: uuid.UUID


def _run(
    tenant_id: uuid.UUID, *, user: str = "ada", test: bool = False, **more: object
) -> RunIdentity:
    values: dict[str, object] = {
        "run_id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "test": test,
        "flow_key": "onboarding",
        "version": 2,
        "user_id": user,
        "trigger_id": uuid.uuid4(),
        "created_at": datetime.now(UTC),
        **more,
    }
    return RunIdentity.model_validate(values)


@pytest.fixture(scope="module")
async def seeded(database: Settings) -> Seeded:
    engine = make_engine(database, pool_size=1)
    try:
        mine = await ensure_tenant(engine, f"flows-{new_run_id()}")
        other = await ensure_tenant(engine, f"flows-other-{new_run_id()}")
        live_key, _ = await issue_api_key(engine, mine.id)
        test_key, _ = await issue_api_key(engine, mine.id, test=True)
        narrow_key, _ = await issue_api_key(engine, mine.id, scopes=frozenset({"admin", "send"}))
        first = {**ONBOARDING, "steps": ONBOARDING["steps"][:2], "category": None}
        await store.save_flow(engine, mine.id, "onboarding", parse_flow(first))
        await store.save_flow(engine, mine.id, "onboarding", parse_flow(ONBOARDING))
        await store.save_flow(engine, other.id, "secret-flow", parse_flow(first))

        # A run one hour into its delay: its first send went out and was delivered.
        base = datetime.now(UTC)
        run = _run(mine.id, cancellation_key="signup-1")
        nid = step_notification_id(run.run_id, "first")
        await store.write_runs(engine, [run])
        await statuslog.record_accepted(
            engine,
            submission.build_input(
                database,
                notification_id=nid,
                tenant_id=mine.id,
                tenant=mine.name,
                request=NotificationRequest(
                    channel=Channel.email, user_id="ada", template="welcome"
                ),
            ),
        )
        for status, seconds in ((Status.sent, 3), (Status.delivered, 5)):
            await statuslog.record_event(
                engine,
                StatusEvent(
                    notification_id=nid,
                    status=status,
                    at=base + timedelta(seconds=seconds),
                    provider="smtp" if status is Status.sent else None,
                ),
            )
        steps = [
            StepState(
                id="first",
                type="send",
                status=StepStatus.completed,
                started_at=base - timedelta(seconds=1),
                ended_at=base + timedelta(seconds=2),
                notification_id=nid,
                outcome="accepted",
            ),
            StepState(
                id="pause",
                type="delay",
                status=StepStatus.completed,
                started_at=base + timedelta(seconds=2),
                ended_at=base + timedelta(seconds=10),
            ),
            StepState(
                id="seen",
                type="wait",
                status=StepStatus.running,
                started_at=base + timedelta(seconds=10),
            ),
        ]
        await store.record_progress(
            engine, RunProgress(run=run, status=RunStatus.running, steps=steps)
        )
        # Enough other runs for two pages, one of them by a test key, one another's.
        others = [_run(mine.id, user=f"u{index:02d}") for index in range(55)]
        test_run = _run(mine.id, user="tess", test=True)
        theirs = _run(other.id)
        await store.write_runs(engine, [*others, test_run, theirs])
        await store.record_progress(
            engine, RunProgress(run=others[0], status=RunStatus.completed, steps=[])
        )
        return Seeded(
            live_key, test_key, narrow_key, run.run_id, test_run.run_id, theirs.run_id, nid
        )
    finally:
        await engine.dispose()


def _text(html: str) -> str:
    """The page's words, tags stripped and white space collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&#39;", "'")


@pytest.mark.fast
def test_steps_and_conditions_read_as_words() -> None:
    steps = parse_flow(ONBOARDING).stored()
    assert step_words(steps[0]) == "send email 'welcome' (fallback sms)"
    assert step_words(steps[1]) == "delay 1h"
    assert step_words(steps[2]) == "wait up to 1h for delivered of step 'first'"
    assert step_words(steps[3]) == "if data.plan is 'pro' and not (recipient.phone exists)"
    assert condition_words({"any": [{"path": "data.n", "op": "in", "value": [1, 2]}]}) == (
        "data.n is one of 1, 2"
    )
    assert step_words({"id": "t", "type": "throttle", "limit": 3, "window_seconds": 90}) == (
        "at most 3 runs per 1m 30s; past that the run ends"
    )
    assert step_words({"id": "d", "type": "delay", "until": "data.due"}) == (
        "delay until the time in data.due"
    )
    assert duration(93600) == "1d 2h"
    # A step type this console does not know yet still shows.
    assert step_words({"id": "x", "type": "teleport"}) == "teleport step"


async def test_the_flows_list_and_a_flows_versions_and_steps(
    seeded: Seeded, client: httpx.AsyncClient
) -> None:
    await sign_in(client, seeded.live_key)

    listed = await client.get("/console/flows")
    assert listed.status_code == 200
    row = re.search(r'<tr data-flow="onboarding">.*?</tr>', listed.text, re.S)
    assert row is not None
    assert "v2" in row.group(0) and "lifecycle" in row.group(0)
    assert "secret-flow" not in listed.text  # another tenant's

    page = await client.get("/console/flows/onboarding")
    assert page.status_code == 200
    words = _text(page.text)
    assert "send email 'welcome' (fallback sms)" in words
    assert "wait up to 1h for delivered of step 'first'" in words
    assert "if data.plan is 'pro' and not (recipient.phone exists)" in words
    assert "then: tips send email 'tips'" in words
    assert "otherwise: nudge send push 'nudge'" in words
    assert 'href="/console/flows/onboarding?version=1"' in page.text
    # An older version shows its own steps.
    older = _text((await client.get("/console/flows/onboarding?version=1")).text)
    assert "delay 1h" in older and "wait up to" not in older and "(latest is v2)" in older

    for path in (
        "/console/flows/secret-flow",  # another tenant's
        "/console/flows/onboarding?version=9",
        "/console/flows/" + "k" * 300,
        "/console/flows/a%00b",
    ):
        assert (await client.get(path)).status_code == 404, path
    assert (await client.get("/console/flows/onboarding?version=0")).status_code == 422
    assert (await client.get("/console/flows?cursor=not-ours")).status_code == 422


async def test_runs_filter_and_page_and_a_run_shows_one_timeline(
    seeded: Seeded, database: Settings, client: httpx.AsyncClient
) -> None:
    await sign_in(client, seeded.live_key)

    first = await client.get("/console/flows/-/runs")
    assert first.status_code == 200
    shown = set(re.findall(r'data-run="([0-9a-f-]+)"', first.text))
    assert len(shown) == 50
    assert str(seeded.theirs) not in shown
    older = re.search(r'href="(/console/flows/-/runs\?cursor=[^"]+)"', first.text)
    assert older is not None
    rest = await client.get(older.group(1).replace("&amp;", "&"))
    more = set(re.findall(r'data-run="([0-9a-f-]+)"', rest.text))
    # 57 of ours (a live key sees test runs too, as over REST), none twice, none theirs.
    assert len(more) == 7 and not more & shown
    assert str(seeded.theirs) not in more

    by_user = await client.get("/console/flows/-/runs?user_id=ada")
    assert re.findall(r'data-run="([0-9a-f-]+)"', by_user.text) == [str(seeded.run_id)]
    done = await client.get("/console/flows/-/runs?status=completed&flow=onboarding")
    assert len(re.findall(r'data-run="', done.text)) == 1
    none = await client.get("/console/flows/-/runs?flow=other")
    assert "No runs match these filters." in _text(none.text)
    # An unknown status is any status, as on the notifications list.
    assert (
        len(re.findall(r'data-run="', (await client.get("/console/flows/-/runs?status=x")).text))
        == 50
    )

    run = await client.get(f"/console/flows/-/runs/{seeded.run_id}")
    assert run.status_code == 200
    assert f'href="/console/notifications/{seeded.notification_id}"' in run.text
    assert f"/workflows/flow-run-{seeded.run_id}" in run.text
    assert database.temporal_ui_url.rstrip("/") in run.text
    timeline = run.text[run.text.index('id="timeline"') :]
    lines = [
        _text(item) for item in re.findall(r'<li class="event"[^>]*>(.*?)</li>', timeline, re.S)
    ]
    # Step transitions and the notification's events, in the order they happened.
    assert [" ".join(line.split()[3:6]) for line in lines] == [
        "step first started",
        "notification of first",
        "step first completed",
        "step pause started",
        "notification of first",
        "notification of first",
        "step pause completed",
        "step seen started",
    ]
    assert [line.split()[6] for line in lines if "notification of" in line] == [
        "accepted",
        "sent",
        "delivered",
    ]


async def test_test_keys_other_tenants_and_hostile_input(
    seeded: Seeded, client: httpx.AsyncClient
) -> None:
    await sign_in(client, seeded.test_key)
    runs = await client.get("/console/flows/-/runs")
    assert re.findall(r'data-run="([0-9a-f-]+)"', runs.text) == [str(seeded.test_run_id)]
    assert (await client.get(f"/console/flows/-/runs/{seeded.test_run_id}")).status_code == 200
    assert (await client.get(f"/console/flows/-/runs/{seeded.run_id}")).status_code == 404

    await sign_in(client, seeded.live_key)
    for path in (
        f"/console/flows/-/runs/{seeded.theirs}",
        f"/console/flows/-/runs/{uuid.uuid4()}",
        "/console/flows/-/runs/not-a-uuid",
        "/console/flows/-/runs/a%00b",
    ):
        assert (await client.get(path)).status_code == 404, path
    for query in (
        "user_id=a%00b",
        "flow=a%00b",
        "flow=" + "f" * 129,
        "user_id=" + "u" * 5000,
        "cursor=not-one-of-ours",
        "cursor=" + "c" * 600,
    ):
        refused = await client.get(f"/console/flows/-/runs?{query}")
        assert refused.status_code == 422, query

    # A key without the read scope signs in but cannot see flows.
    await sign_in(client, seeded.narrow_key)
    assert (await client.get("/console/flows")).status_code == 403
    assert (await client.get("/console/flows/onboarding")).status_code == 403


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Debian's chromium at {CHROMIUM}")
async def test_the_flow_pages_fit_a_phone(seeded: Seeded, database: Settings) -> None:
    """At 390 px wide no flow page scrolls sideways: tables become cards."""
    from playwright.async_api import async_playwright

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(database), host="127.0.0.1", port=port, log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not serving.done(), "the console did not start"
            await asyncio.sleep(0.05)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
            context = await browser.new_context(
                base_url=f"http://127.0.0.1:{port}",
                viewport={"width": 390, "height": 844},
                is_mobile=True,
            )
            page = await context.new_page()
            page.set_default_timeout(30_000)
            await page.goto("/console/sign-in")
            await page.get_by_label("API key").fill(seeded.live_key)
            await page.get_by_role("button", name="Sign in").click()
            await page.get_by_role("button", name="Sign out").wait_for()
            for path in (
                "/console/flows",
                "/console/flows/onboarding",
                "/console/flows/-/runs",
                f"/console/flows/-/runs/{seeded.run_id}",
            ):
                await page.goto(path)
                width = await page.evaluate("document.documentElement.scrollWidth")
                assert width <= 390, f"{path} scrolls sideways: {width} px"
                if os.environ.get("HERALD_FLOW_SCREENSHOTS"):
                    name = path.strip("/").replace("/", "_").replace("-", "")[:40]
                    target = Path(os.environ["HERALD_FLOW_SCREENSHOTS"]) / f"{name}.png"
                    await page.screenshot(path=str(target), full_page=True)
            await browser.close()
    finally:
        server.should_exit = True
        await serving
