"""``<herald-inbox>`` in a real browser (Debian's Chromium driven by Playwright) on the
``herald dev`` demo page, against the real API, workers, Temporal and PostgreSQL: a
notification to ``inapp`` shows up in the open inbox without a reload in under a second,
the badge counts unread messages, reading and archiving work by mouse and keyboard, and
axe-core finds no critical accessibility violation."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from herald.db import make_engine
from herald.inbox import store
from herald.tenants import tenant_by_name
from tests.console.support import critical_violations
from tests.harness import CHROMIUM, CHROMIUM_ARGS, Stack, Tenant, events, new_tenant

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)",
)
WAIT_MS = 15_000


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        await launched.close()


@pytest.fixture
async def demo(stack: Stack) -> AsyncIterator[Tenant]:
    """The ``demo`` tenant the demo page signs tokens for, with an API key."""
    made = await new_tenant(stack, "demo")  # made if this run has none yet
    yield made
    await made.client.aclose()


@pytest.fixture
async def page(browser: Any, stack: Stack) -> AsyncIterator[Any]:
    context = await browser.new_context(base_url=stack.api_url)
    opened = await context.new_page()
    opened.set_default_timeout(WAIT_MS)
    yield opened
    await context.close()


def bell(page: Any) -> Any:
    return page.get_by_role("button", name="Notifications,")


async def open_inbox(page: Any, user_id: str) -> None:
    await page.goto(f"/inbox/demo?user={user_id}")
    await page.get_by_role("button", name="Notifications, no unread").wait_for()
    await bell(page).click()
    await page.get_by_role("heading", name="Notifications").wait_for()


async def test_a_notification_appears_live_and_reading_it_drops_the_count(
    page: Any, demo: Tenant, stack: Stack
) -> None:
    user = await demo.user(email=None, phone=None)
    key = await demo.template("inapp", "Order {{ order }} has shipped", subject="Shipped")
    await open_inbox(page, user["id"])
    await page.evaluate("window.notReloaded = true")
    # When the item shows up, by the page's clock (the same machine's as the database).
    await page.evaluate(
        """() => {
          const root = document.querySelector('herald-inbox').shadowRoot;
          new MutationObserver((_, observer) => {
            if (root.querySelector('li')) { window.shownAt = Date.now(); observer.disconnect(); }
          }).observe(root.querySelector('ul'), {childList: true});
        }"""
    )
    nid = await demo.send("inapp", user["id"], key, {"order": "A-1"})
    item = page.locator("herald-inbox li.unread", has_text="Order A-1 has shipped")
    await item.wait_for()
    engine = make_engine(stack.settings, pool_size=1)
    try:
        async with engine.connect() as conn:
            stored = (
                await conn.exec_driver_sql(
                    "SELECT extract(epoch FROM created_at) * 1000 FROM inbox_messages"
                    " WHERE notification_id = $1",
                    (uuid.UUID(nid),),
                )
            ).scalar_one()
    finally:
        await engine.dispose()
    lag_ms = await page.evaluate("window.shownAt") - float(stored)
    assert lag_ms < 1000, f"shown {lag_ms:.0f} ms after it was stored"
    assert await page.evaluate("window.notReloaded") is True
    await page.get_by_role("button", name="Notifications, 1 unread").wait_for()
    assert await page.locator("herald-inbox .badge").text_content() == "1"
    assert await page.get_by_role("status").text_content() == "1 unread notification"
    assert await critical_violations(page) == []

    await item.locator("button.open").click()
    await page.get_by_role("button", name="Notifications, no unread").wait_for()
    await page.locator("herald-inbox li:not(.unread)", has_text="Order A-1").wait_for()
    assert await page.locator("herald-inbox .badge").is_hidden()
    for _ in range(50):  # the notification's events show it was seen and read
        statuses = [event["status"] for event in await events(demo.client, nid)]
        if {"seen", "read"} <= set(statuses):
            break
        await asyncio.sleep(0.2)
    assert statuses.index("seen") < statuses.index("read"), statuses


async def test_keyboard_alone_reads_archives_and_marks_all_read(
    page: Any, demo: Tenant, stack: Stack
) -> None:
    user_id = f"kb-{uuid.uuid4().hex[:8]}"
    engine = make_engine(stack.settings, pool_size=1)
    found = await tenant_by_name(engine, "demo")
    assert found is not None

    async def create(title: str) -> None:
        async with engine.begin() as conn:
            await store.create_message(
                conn,
                tenant=found.id,
                user_id=user_id,
                notification_id=uuid.uuid4(),
                title=title,
                body="",
            )

    try:
        await page.goto(f"/inbox/demo?user={user_id}")
        await page.get_by_role("button", name="Notifications, no unread").wait_for()
        for title in ("One", "Two", "Three"):
            await create(title)
        await page.get_by_role("button", name="Notifications, 3 unread").wait_for()

        await page.evaluate("document.activeElement && document.activeElement.blur()")
        await page.keyboard.press("Tab")
        await page.keyboard.press("Enter")  # opens, and the heading takes focus
        heading = page.get_by_role("heading", name="Notifications")
        await heading.wait_for()
        assert await bell(page).get_attribute("aria-expanded") == "true"
        await page.keyboard.press("Tab")  # "Mark all read" comes first
        await page.keyboard.press("Tab")  # then the newest message
        await page.keyboard.press("Enter")
        await page.get_by_role("button", name="Notifications, 2 unread").wait_for()
        await page.keyboard.press("Tab")  # its "Mark unread"
        await page.keyboard.press("Tab")  # its "Archive"
        await page.keyboard.press("Enter")
        await page.get_by_role("button", name="Archive: Three").wait_for(state="detached")
        focused = await page.evaluate(
            "document.querySelector('herald-inbox').shadowRoot.activeElement.textContent"
        )
        assert "Two" in focused  # focus moved to the next message, not lost
        await page.get_by_role("button", name="Mark all read").press("Enter")
        await page.get_by_role("button", name="Notifications, no unread").wait_for()
        await page.keyboard.press("Escape")
        assert await bell(page).get_attribute("aria-expanded") == "false"
        assert (
            await page.evaluate(
                "document.querySelector('herald-inbox').shadowRoot.activeElement.className"
            )
            == "bell"
        )
        assert await critical_violations(page) == []
    finally:
        await engine.dispose()
