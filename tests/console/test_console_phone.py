"""Every console list page at phone width (390 x 844, an iPhone 12 to 15) in Debian's
Chromium against the session's Herald: no sideways scrolling, rows as cards whose main
text stays readable, and a page whose height grows sanely with its rows.

Writes ``docs/console/notifications-phone.png`` and ``docs/console/broadcasts-phone.png``
(the first screen of each; the README shows the first), so the phone layout cannot go
stale unnoticed.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from herald.db import make_engine
from herald.tenants import create_api_key
from tests.harness import CHROMIUM, CHROMIUM_ARGS, Stack, Tenant, new_run_id

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
PHONE = {"width": 390, "height": 844}
NOTIFICATIONS = 50
# A card is a few label/value lines; past this per row is the one-character-column
# layout this guards against (50 notifications measured 27,000 px).
MAX_ROW_PX = 200
# Narrower than this, a status or id is being broken into a letter per line.
MIN_MAIN_TEXT_PX = 60
WAIT_MS = 30_000

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)",
)


class Filled:
    """A tenant with rows on every list page, and the live key that signs in."""

    def __init__(self, rest: Tenant, key: str, made: dict[str, str]) -> None:
        self.rest, self.key, self.made = rest, key, made


async def _fill(rest: Tenant) -> dict[str, str]:
    """Rows on every list page, with the long unbroken values that squeezed the old
    columns to a character each; returns the template's key and the webhook's id."""
    users = [(await rest.user(id=f"customer-{uuid.uuid4().hex}-{n}"))["id"] for n in range(5)]
    template = await rest.template(
        "email",
        "<p>Hi {{ name }}</p>",
        subject="Hi {{ name }}",
        key=f"order-confirmation-{uuid.uuid4().hex[:12]}",
    )
    later = {"send_at": "2099-01-01T00:00:00Z"}  # waits on a timer: cheap, and "scheduled"
    batch = await rest.client.post(
        "/v1/notifications/batch",
        json={
            "notifications": [
                {
                    "channel": "email",
                    "user_id": users[n % len(users)],
                    "template": template,
                    "data": {"name": "Ada"},
                    **(later if n % 5 else {}),
                }
                for n in range(NOTIFICATIONS)
            ]
        },
    )
    assert batch.status_code == 200, batch.text
    assert {item["status"] for item in batch.json()["results"]} == {202}, batch.text
    topic = f"customers-with-a-long-topic-key-{uuid.uuid4().hex[:8]}"
    made = await rest.client.put(f"/v1/topics/{topic}", json={"name": "Customers"})
    assert made.status_code in (200, 201), made.text
    added = await rest.client.post(f"/v1/topics/{topic}/subscribers", json={"user_ids": users})
    assert added.status_code == 200, added.text
    broadcast = await rest.client.post(
        "/v1/broadcasts",
        json={
            "channel": "email",
            "template": template,
            "data": {"name": "Ada"},
            "audience": {"topic": topic},
            **later,
        },
    )
    assert broadcast.status_code == 202, broadcast.text
    # Only cancellations go to it, and nothing here is cancelled: nothing is delivered.
    hook = await rest.client.post(
        "/v1/webhooks",
        json={"url": f"http://127.0.0.1:9/{uuid.uuid4().hex}/hooks", "events": ["cancelled"]},
    )
    assert hook.status_code == 201, hook.text
    return {"template": template, "webhook": str(hook.json()["id"])}


@pytest.fixture(scope="module")
async def filled(stack: Stack) -> AsyncIterator[Filled]:
    name = f"phone-{new_run_id()}"
    engine = make_engine(stack.settings, pool_size=1)
    try:
        key = await create_api_key(engine, name)
        await create_api_key(engine, name, test=True)  # a second row on the keys page
    finally:
        await engine.dispose()
    client = httpx.AsyncClient(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    rest = Tenant(client, name)
    yield Filled(rest, key, await _fill(rest))
    await client.aclose()


@pytest.fixture(scope="module")
async def phone(stack: Stack, filled: Filled) -> AsyncIterator[Any]:
    """A signed-in page in a phone-sized Chromium window."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        context = await browser.new_context(
            base_url=stack.api_url, viewport=PHONE, is_mobile=True, has_touch=True
        )
        page = await context.new_page()
        page.set_default_timeout(WAIT_MS)
        await page.goto("/console/sign-in")
        await page.get_by_label("API key").fill(filled.key)
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_role("button", name="Sign out").wait_for()
        yield page
        await browser.close()


async def _layout(page: Any, row: str, main: str) -> dict[str, Any]:
    """The page's width and height, how many rows, the narrowest of their main texts and
    the narrowest cell shown (a hidden column measures 0 and is left out)."""
    return dict(
        await page.evaluate(
            """([row, main]) => {
                const rows = [...document.querySelectorAll(row)];
                const width = (element) => element ? element.getBoundingClientRect().width : 0;
                const cells = rows.flatMap(r => [...r.querySelectorAll("td")]).map(width);
                return {
                    width: document.documentElement.scrollWidth,
                    height: document.documentElement.scrollHeight,
                    rows: rows.length,
                    main: Math.min(...rows.map(r => width(r.querySelector(main)))),
                    cell: Math.min(...cells.filter(w => w > 0)),
                };
            }""",
            [row, main],
        )
    )


# (page, a row, its main text, how many rows at least)
PAGES = [
    ("/console/notifications", "tr[data-notification]", "a code", NOTIFICATIONS),
    ("/console/users", "#user-rows tr", "a", 5),
    ("/console/templates", "tbody tr", "a", 1),
    ("/console/topics", "tr[data-topic]", "code", 1),
    ("/console/broadcasts", "tr[data-broadcast]", "a code", 1),
    ("/console/webhooks", "tr[data-endpoint]", "a", 1),
    ("/console/keys", "tr[data-key]", "code", 2),
]


@pytest.mark.parametrize(("path", "row", "main", "rows"), PAGES, ids=[p[0] for p in PAGES])
async def test_a_list_page_fits_a_phone(
    phone: Any, path: str, row: str, main: str, rows: int
) -> None:
    await phone.goto(path)
    await phone.locator(row).first.wait_for()
    layout = await _layout(phone, row, main)
    assert layout["rows"] >= rows, layout
    assert layout["width"] <= PHONE["width"], f"{path} scrolls sideways: {layout}"
    assert layout["height"] < layout["rows"] * MAX_ROW_PX + 2 * PHONE["height"], layout
    assert layout["main"] > MIN_MAIN_TEXT_PX, f"{path} squeezes its rows: {layout}"
    assert layout["cell"] > MIN_MAIN_TEXT_PX, f"{path} squeezes a column: {layout}"
    # Every section of the navigation is on screen (it wraps rather than running off).
    nav = phone.get_by_role("navigation", name="Main")
    last = await nav.get_by_role("link", name="Broadcasts", exact=True).bounding_box()
    assert last["x"] + last["width"] <= PHONE["width"], last
    if path in ("/console/notifications", "/console/broadcasts"):
        name = path.rsplit("/", 1)[1]
        await phone.screenshot(path=str(SCREENSHOTS / f"{name}-phone.png"))


async def test_webhook_deliveries_fit_a_phone(phone: Any, filled: Filled) -> None:
    await phone.goto(f"/console/webhooks/{filled.made['webhook']}")
    await phone.get_by_role("heading", name="Recent deliveries").wait_for()
    layout = await _layout(phone, "tr[data-delivery]", "code")
    assert layout["width"] <= PHONE["width"], layout


async def test_the_template_editor_opens_on_a_rendered_preview(phone: Any, filled: Filled) -> None:
    """Its sample data starts with each variable the version needs, so it does not open
    on "missing variable"."""
    await phone.goto(f"/console/templates/{filled.made['template']}")
    await phone.locator('#preview [data-preview="ok"]').wait_for()
    await phone.locator("#preview-body", has_text="Hi name").wait_for()
    assert await phone.get_by_label("Sample data (JSON) for the preview").input_value() == (
        '{"name": "name"}'
    )
