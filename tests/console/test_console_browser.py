"""The console in a real browser (Debian's Chromium driven by Playwright) against a real
Herald: API, core and email workers, Temporal, PostgreSQL and the SMTP sink.

Also the end-to-end path of test keys: their email never reaches the SMTP server.
Screenshots of the notifications list, a timeline and the template editor are written to
``docs/console/`` by this run (the README shows them), so they cannot go stale unnoticed.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.sinks import Sinks
from herald.db import make_engine
from herald.ports import free_port
from herald.settings import Settings
from herald.tenants import create_api_key
from tests.console.support import critical_violations
from tests.harness import (
    CHROMIUM,
    CHROMIUM_ARGS,
    Stack,
    Tenant,
    events,
    new_run_id,
    wait_for_status,
)

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
WAIT_MS = 30_000

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)",
)


@pytest.fixture(scope="module")
def console_stack(settings: Settings, run_dir: Path) -> Iterator[Stack]:
    """A Herald of this module's own whose retries wait 30 s (so a notification can be
    cancelled while it waits on one), with its console over plain HTTP."""
    own = settings.model_copy(
        update={
            "api_port": free_port(),
            "task_queue_prefix": f"{settings.task_queue_prefix}-console",
            "retry_initial_interval_seconds": 30.0,
            "retry_maximum_interval_seconds": 30.0,
            "console_secure_cookie": False,
            "console_refresh_seconds": 0.5,
        }
    )
    stack = Stack(own, run_dir / "logs-console", queues=("core", "email"))
    api = stack.processes["api"]
    urls = ",".join(f"http://127.0.0.1:{port}/metrics" for port in stack.metrics_ports.values())
    api.env = {**api.env, "HERALD_CONSOLE_METRICS_URLS": urls}
    yield stack.start()
    stack.stop()


async def _key(stack: Stack, tenant: str, *, test: bool = False) -> str:
    engine = make_engine(stack.settings, pool_size=1)
    try:
        return await create_api_key(engine, tenant, test=test)
    finally:
        await engine.dispose()


class Keys:
    """A tenant's live and test keys, with a REST client for each."""

    def __init__(self, stack: Stack, name: str, live: str, test: str) -> None:
        self.name, self.live, self.test = name, live, test

        def client(key: str) -> httpx.AsyncClient:
            return httpx.AsyncClient(
                base_url=stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
            )

        self.rest = Tenant(client(live), name)
        self.rest_test = Tenant(client(test), name)

    async def close(self) -> None:
        await self.rest.client.aclose()
        await self.rest_test.client.aclose()


@pytest.fixture(scope="module")
async def acme(console_stack: Stack) -> AsyncIterator[Keys]:
    name = f"acme-{new_run_id()}"
    keys = Keys(
        console_stack,
        name,
        await _key(console_stack, name),
        await _key(console_stack, name, test=True),
    )
    yield keys
    await keys.close()


@pytest.fixture(scope="module")
async def welcome(acme: Keys) -> str:
    return await acme.rest.template(
        "email", "<p>Hello {{ name }}</p>", subject="Welcome, {{ name }}", key="welcome"
    )


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        await launched.close()


async def _signed_in(browser: Any, stack: Stack, key: str, **context: Any) -> Any:
    page = await (await browser.new_context(base_url=stack.api_url, **context)).new_page()
    page.set_default_timeout(WAIT_MS)
    await page.goto("/console/sign-in")
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", name="Overview", exact=True).wait_for()
    return page


@pytest.fixture
async def page(browser: Any, console_stack: Stack, acme: Keys) -> AsyncIterator[Any]:
    signed_in = await _signed_in(
        browser, console_stack, acme.live, viewport={"width": 1280, "height": 900}
    )
    yield signed_in
    await signed_in.context.close()


def _row(page: Any, notification_id: str) -> Any:
    return page.locator(f'tr[data-notification="{notification_id}"]')


async def test_keyboard_alone_signs_in(browser: Any, console_stack: Stack, acme: Keys) -> None:
    context = await browser.new_context(base_url=console_stack.api_url)
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    await page.goto("/console/sign-in")
    await page.evaluate("document.activeElement && document.activeElement.blur()")
    for _ in range(10):  # Tab from the top of the page to the key's field
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.id") == "api_key":
            break
    else:
        raise AssertionError("Tab never reached the API key field")
    await page.keyboard.type(acme.live)
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent.trim()") == "Sign in"
    await page.keyboard.press("Enter")
    await page.get_by_role("heading", name="Overview", exact=True).wait_for()  # opens on it
    await context.close()


async def test_the_list_shows_a_new_notification_reach_sent_without_a_reload(
    page: Any, acme: Keys, welcome: str
) -> None:
    await page.goto("/console/notifications")  # the console opens on the overview
    await page.get_by_role("heading", name="Notifications", exact=True).wait_for()
    user = await acme.rest.user()
    notification_id = await acme.rest.send("email", user["id"], welcome, {"name": "Ada"})
    row = _row(page, notification_id)
    await row.locator("mark.status-sent").wait_for()  # the page refreshed itself
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "notifications.png"))

    await page.get_by_label("Status").select_option("failed")
    await page.get_by_role("button", name="Filter").click()
    await page.get_by_text("No notifications match these filters").wait_for()
    await page.get_by_label("Status").select_option("")
    await page.get_by_label("User id").fill(user["id"])
    await page.get_by_role("button", name="Filter").click()
    await row.wait_for()
    assert await page.locator("tr[data-notification]").count() == 1


async def test_a_timeline_shows_the_events_and_resend_adds_a_second_cycle(
    page: Any, acme: Keys, welcome: str
) -> None:
    user = await acme.rest.user()
    notification_id = await acme.rest.send("email", user["id"], welcome, {"name": "Ada"})
    await wait_for_status(acme.rest.client, notification_id, {"sent"})
    await page.goto(f"/console/notifications/{notification_id}")
    cycle_1 = page.get_by_role("region", name="Send cycle 1")
    for status in ("accepted", "sending", "sent"):
        await cycle_1.locator(f"mark.status-{status}").first.wait_for()
    link = page.get_by_role("link", name="Open the workflow in the Temporal UI")
    assert (await link.get_attribute("href")).endswith(f"/workflows/notification-{notification_id}")
    await page.screenshot(path=str(SCREENSHOTS / "timeline.png"), full_page=True)

    await page.get_by_role("button", name="Resend").click()
    await page.get_by_text("Resend started").wait_for()
    cycle_2 = page.get_by_role("region", name="Send cycle 2")
    await cycle_2.locator("mark.status-sent").wait_for()
    cycles = {event["cycle"] for event in await events(acme.rest.client, notification_id)}
    assert cycles == {1, 2}


async def test_a_notification_waiting_on_a_retry_is_cancelled_from_its_page(
    page: Any, acme: Keys, welcome: str
) -> None:
    user = await acme.rest.user(email=f"r{uuid.uuid4().hex[:6]}+retry@example.com")
    notification_id = await acme.rest_test.send("email", user["id"], welcome, {"name": "Ada"})
    await wait_for_status(acme.rest_test.client, notification_id, {"retrying"})
    await page.goto(f"/console/notifications/{notification_id}")
    await page.locator("#status mark.status-retrying").wait_for()
    await page.locator("#status mark.test").wait_for()  # shown as a test notification
    await page.get_by_role("button", name="Cancel").click()
    await page.get_by_text("Cancel requested").wait_for()
    await page.locator("#status mark.status-cancelled").wait_for()
    final = await wait_for_status(acme.rest.client, notification_id, {"cancelled"}, timeout=10)
    assert final["test"] is True


async def test_the_editor_previews_a_missing_variable_and_saves_a_new_version(
    page: Any, acme: Keys
) -> None:
    key = await acme.rest.template("email", "<p>Hi {{ name }}</p>", subject="Hello {{ name }}")
    await page.goto(f"/console/templates/{key}")
    preview = page.locator("#preview")
    await page.get_by_label("Sample data (JSON) for the preview").fill('{"name": "Ada"}')
    await preview.get_by_text("Hi Ada").wait_for()
    await page.get_by_label("Body (HTML)").fill("<p>Hi {{ name }}, your code is {{ code }}</p>")
    await preview.get_by_text("missing variable 'code'").wait_for()  # before saving
    await page.screenshot(path=str(SCREENSHOTS / "template-editor.png"), full_page=True)
    await page.get_by_label("Sample data (JSON) for the preview").fill(
        '{"name": "Ada", "code": 4711}'
    )
    await preview.get_by_text("Hi Ada, your code is 4711").wait_for()

    await page.get_by_role("button", name="Save as version 2").click()
    await page.get_by_text("Saved as version 2.").wait_for()
    stored = (await acme.rest.client.get(f"/v1/templates/{key}")).json()["versions"][0]
    assert (stored["version"], stored["body"]) == (
        2,
        "<p>Hi {{ name }}, your code is {{ code }}</p>",
    )


async def test_a_key_created_in_the_console_works_until_revoked_there(
    page: Any, console_stack: Stack
) -> None:
    await page.goto("/console/keys")
    await page.get_by_label("Kind").select_option("test")
    await page.get_by_role("button", name="Create key").click()
    new_key = await page.get_by_label("The new key").input_value()
    assert new_key.startswith("hk_test_")
    headers = {"Authorization": f"Bearer {new_key}"}
    async with httpx.AsyncClient(base_url=console_stack.api_url, headers=headers) as rest:
        assert (await rest.get("/v1/users")).status_code == 200
        await page.goto("/console/keys")  # the key is not shown again
        assert new_key not in await page.content()
        await page.get_by_role("button", name=f"Revoke key {new_key[:15]}").click()
        await page.get_by_text("Done: revoked").wait_for()
        assert (await rest.get("/v1/users")).status_code == 401  # at once


async def test_another_tenants_notification_is_not_found_in_the_console(
    page: Any, console_stack: Stack
) -> None:
    name = f"other-{new_run_id()}"
    other = Keys(
        console_stack,
        name,
        await _key(console_stack, name),
        await _key(console_stack, name, test=True),
    )
    try:
        template = await other.rest.template("email", "<p>x</p>", subject="s")
        user = await other.rest.user()
        theirs = await other.rest.send("email", user["id"], template)
        answer = await page.goto(f"/console/notifications/{theirs}")
        assert answer.status == 404
        await page.goto(f"/console/notifications?user_id={user['id']}")
        await page.get_by_text("No notifications match these filters").wait_for()
    finally:
        await other.close()


async def test_a_form_posted_without_the_csrf_token_is_refused(
    page: Any, acme: Keys, welcome: str
) -> None:
    user = await acme.rest.user()
    notification_id = await acme.rest.send("email", user["id"], welcome, {"name": "Ada"})
    status = await page.evaluate(
        """async (id) => (await fetch(`/console/notifications/${id}/resend`,
                          {method: "POST", body: new URLSearchParams({})})).status""",
        notification_id,
    )
    assert status == 403


async def test_the_console_is_usable_at_phone_width(
    browser: Any, console_stack: Stack, acme: Keys
) -> None:
    page = await _signed_in(
        browser, console_stack, acme.live, viewport={"width": 390, "height": 844}, is_mobile=True
    )
    try:
        for path, heading in [
            ("/console/notifications", "Notifications"),
            ("/console/templates", "Templates"),
            ("/console/users", "Users"),
            ("/console/keys", "API keys"),
        ]:
            await page.goto(path)
            await page.get_by_role("heading", name=heading, exact=True).wait_for()
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 1, f"{path} scrolls sideways by {overflow}px at 390px"
        await page.get_by_role("link", name="Health").click()
        await page.get_by_role("heading", name="Health", exact=True).wait_for()
    finally:
        await page.context.close()


async def test_axe_finds_no_critical_accessibility_violation_on_any_page(
    browser: Any, console_stack: Stack, acme: Keys, welcome: str
) -> None:
    user = await acme.rest.user()
    notification_id = await acme.rest.send("email", user["id"], welcome, {"name": "Ada"})
    # The console's policy allows only its own scripts; the test injects axe besides.
    page = await _signed_in(browser, console_stack, acme.live, bypass_csp=True)
    try:
        found = {}
        for path in [
            "/console/overview",
            "/console/notifications",
            f"/console/notifications/{notification_id}",
            "/console/templates",
            f"/console/templates/{welcome}",
            "/console/users",
            f"/console/users/{user['id']}",
            "/console/keys",
            "/console/health",
        ]:
            await page.goto(path)
            await page.wait_for_load_state("networkidle")
            critical = await critical_violations(page)
            if critical:
                found[path] = critical
        assert not found, found
        await page.context.clear_cookies()
        await page.goto("/console/sign-in")
        assert not await critical_violations(page)
    finally:
        await page.context.close()


async def test_the_health_page_shows_readiness_breakers_queues_and_pollers(page: Any) -> None:
    await page.goto("/console/health")
    readiness = page.get_by_role("region", name="Readiness")
    for service in ("postgresql", "temporal", "rabbitmq"):
        await readiness.get_by_role("row", name=f"{service} ok").wait_for()
    pollers = page.get_by_role("region", name="Temporal pollers")
    await pollers.get_by_role("row", name="-core workflow 1:", exact=False).wait_for()
    queues = page.get_by_role("region", name="RabbitMQ queues")
    await queues.get_by_role("cell", name="herald.email", exact=True).wait_for()
    await page.get_by_role("region", name="Circuit breakers").get_by_text("smtp").first.wait_for()


async def test_a_test_keys_email_never_reaches_the_smtp_server(
    acme: Keys, welcome: str, sinks: Sinks
) -> None:
    user = await acme.rest.user()
    sent_id = await acme.rest_test.send("email", user["id"], welcome, {"name": "Ada"})
    sent = await wait_for_status(acme.rest_test.client, sent_id, {"sent", "failed"})
    assert (sent["status"], sent["test"], sent["provider"]) == ("sent", True, "test")
    assert sinks.state.received("email", to=user["email"]) == []

    refused = await acme.rest.user(email=f"f{uuid.uuid4().hex[:6]}+fail@example.com")
    failed_id = await acme.rest_test.send("email", refused["id"], welcome, {"name": "Ada"})
    failed = await wait_for_status(acme.rest_test.client, failed_id, {"sent", "failed"})
    assert (failed["status"], failed["attempts"], failed["test"]) == ("failed", 1, True)
    assert "+fail" in failed["last_error"]
    assert sinks.state.received("email", to=refused["email"]) == []

    live_user = await acme.rest.user()
    live_id = await acme.rest.send("email", live_user["id"], welcome, {"name": "Ada"})
    live = await wait_for_status(acme.rest.client, live_id, {"sent"})
    assert (live["test"], live["provider"]) == (False, "smtp")
    assert len(sinks.state.received("email", to=live_user["email"])) == 1


async def test_the_overview_charts_a_tenants_sends_at_desktop_and_phone_width(
    browser: Any, console_stack: Stack, acme: Keys, welcome: str
) -> None:
    """The page the console opens on, with sends that ended sent, failed and suppressed;
    its screenshots go into the README."""
    users = [await acme.rest.user() for _ in range(4)]
    refused = await acme.rest.user(email=f"f{uuid.uuid4().hex[:6]}+fail@example.com")
    opted_out = await acme.rest.user(preferences={"email": False})
    sent = [await acme.rest.send("email", u["id"], welcome, {"name": "Ada"}) for u in users]
    failed = await acme.rest_test.send("email", refused["id"], welcome, {"name": "Ada"})
    suppressed = await acme.rest.send("email", opted_out["id"], welcome, {"name": "Ada"})
    for notification_id in [*sent, failed, suppressed]:
        await wait_for_status(acme.rest.client, notification_id)

    page = await _signed_in(
        browser, console_stack, acme.live, viewport={"width": 1280, "height": 900}
    )
    try:
        email = page.locator('article.chart-card[data-channel="email"][data-window="hour"]')
        await email.get_by_role("img", name="email, in the last hour, per 5 minutes").wait_for()
        reason = page.get_by_role("region", name="Top failure reasons, last 24 hours")
        await reason.get_by_role(
            "link", name=f"latest notification failing with this reason, {failed}"
        ).wait_for()
        await (
            page.get_by_role("region", name="Queues and breakers")
            .get_by_text("herald.email")
            .first.wait_for()
        )
        await page.screenshot(path=str(SCREENSHOTS / "overview.png"), full_page=True)
        await reason.get_by_role("link", name="+fail", exact=False).first.click()
        await _row(page, failed).wait_for()  # the list of the failing notifications
    finally:
        await page.context.close()

    phone = await _signed_in(
        browser, console_stack, acme.live, viewport={"width": 390, "height": 844}, is_mobile=True
    )
    try:
        await phone.get_by_role("heading", name="Last 24 hours", exact=True).wait_for()
        width = await phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the overview scrolls sideways at 390 px: {width}"
        await phone.screenshot(path=str(SCREENSHOTS / "overview-phone.png"), full_page=True)
    finally:
        await phone.context.close()
