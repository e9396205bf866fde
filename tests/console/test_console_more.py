"""The console's webhooks and broadcasts pages in a real browser (Debian's Chromium
driven by Playwright) against a real Herald: API, core and email workers, the webhook
dispatcher, Temporal, PostgreSQL and the SMTP sink, with a local webhook receiver."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from herald.ports import free_port
from herald.settings import Settings
from tests.console.support import critical_violations
from tests.console.test_console_browser import Keys, _key, _signed_in
from tests.harness import CHROMIUM, CHROMIUM_ARGS, Stack, new_run_id, wait_for_status

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)",
)


@pytest.fixture(scope="module")
def console_stack(settings: Settings, run_dir: Path) -> Iterator[Stack]:
    """A Herald of this module's own (with its webhook dispatcher), console over HTTP."""
    own = settings.model_copy(
        update={
            "api_port": free_port(),
            "task_queue_prefix": f"{settings.task_queue_prefix}-console2",
            "console_secure_cookie": False,
            "console_refresh_seconds": 0.5,
        }
    )
    stack = Stack(own, run_dir / "logs-console2", queues=("core", "email"))
    yield stack.start()
    stack.stop()


async def _tenant(stack: Stack, prefix: str) -> Keys:
    name = f"{prefix}-{new_run_id()}"
    return Keys(stack, name, await _key(stack, name), await _key(stack, name, test=True))


@pytest.fixture(scope="module")
async def acme(console_stack: Stack) -> AsyncIterator[Keys]:
    keys = await _tenant(console_stack, "acme")
    yield keys
    await keys.close()


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
async def page(browser: Any, console_stack: Stack, acme: Keys) -> AsyncIterator[Any]:
    signed_in = await _signed_in(browser, console_stack, acme.live, bypass_csp=True)
    yield signed_in
    await signed_in.context.close()


class Receiver:
    """A local webhook endpoint answering 200, keeping what it got."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.close()


async def _topic(keys: Keys, size: int) -> str:
    users = [(await keys.rest.user())["id"] for _ in range(size)]
    key = f"topic-{uuid.uuid4().hex[:8]}"
    made = await keys.rest.client.put(f"/v1/topics/{key}", json={"name": "Small"})
    assert made.status_code in (200, 201), made.text
    added = await keys.rest.client.post(f"/v1/topics/{key}/subscribers", json={"user_ids": users})
    assert added.status_code == 200, added.text
    return key


async def _broadcast(keys: Keys, topic: str, **extra: Any) -> str:
    template = await keys.rest.template("email", "<p>News</p>", subject="News")
    answer = await keys.rest.client.post(
        "/v1/broadcasts",
        json={"channel": "email", "template": template, "audience": {"topic": topic}, **extra},
    )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


async def test_a_webhook_made_in_the_console_shows_its_secret_once_and_lists_deliveries(
    page: Any, acme: Keys, receiver: Receiver
) -> None:
    await page.goto("/console/webhooks")
    await page.get_by_label("URL").fill(receiver.url)
    await page.get_by_label("sent", exact=True).check()
    await page.get_by_role("button", name="Add endpoint").click()
    secret = await page.get_by_label("The signing secret").input_value()
    assert secret.startswith("whsec_")
    await page.reload()  # the secret is not shown again
    await page.get_by_role("link", name=receiver.url).wait_for()
    assert secret not in await page.content()
    assert not await critical_violations(page)

    user = await acme.rest.user()
    template = await acme.rest.template("email", "<p>Hi</p>", subject="Hi")
    notification_id = await acme.rest.send("email", user["id"], template)
    await wait_for_status(acme.rest.client, notification_id, {"sent"})
    await page.get_by_role("link", name=receiver.url).click()
    delivery = page.locator("tr[data-delivery]", has_text="notification.sent")
    await delivery.get_by_text("HTTP 200").wait_for()  # the table refreshed itself
    assert notification_id[:12] in await delivery.inner_text()
    # What the receiver got is signed with the secret the console showed.
    headers, body = receiver.received[0]
    assert Webhook(secret).verify(body, headers)["notification_id"] == notification_id
    assert not await critical_violations(page)

    await page.get_by_role("button", name="Delete endpoint").click()
    await page.get_by_text("Done: deleted the endpoint").wait_for()
    assert (await acme.rest.client.get("/v1/webhooks")).json() == []


async def test_a_broadcasts_progress_reaches_completed_without_a_reload(
    page: Any, acme: Keys
) -> None:
    topic = await _topic(acme, 5)
    broadcast_id = await _broadcast(acme, topic, rate_per_second=5)
    await page.goto(f"/console/broadcasts/{broadcast_id}")
    await page.evaluate("window.notReloaded = true")
    live = page.get_by_role("region", name="Progress")
    await live.locator("#state mark.status-completed").wait_for()
    await live.locator('td[data-count="sent"]', has_text=re.compile(r"^5$")).wait_for()
    assert await live.locator("#started").inner_text() == "5"
    assert await live.locator("#progress").get_attribute("value") == "5"
    assert await page.evaluate("window.notReloaded") is True
    assert await live.get_by_role("button", name="Cancel broadcast").count() == 0
    assert not await critical_violations(page)

    await page.get_by_role("link", name="Its notifications").click()
    await page.locator("tr[data-notification]").nth(4).wait_for()
    assert await page.locator("tr[data-notification]").count() == 5
    assert await page.get_by_label("Broadcast id").input_value() == broadcast_id

    await page.goto("/console/broadcasts")
    await page.locator(f'tr[data-broadcast="{broadcast_id}"]').get_by_text("5 / 5").wait_for()
    assert not await critical_violations(page)
    await page.goto("/console/topics")
    row = page.locator(f'tr[data-topic="{topic}"]')
    assert await row.locator("td[data-subscribers]").inner_text() == "5"
    assert not await critical_violations(page)
    await row.get_by_role("link").click()
    assert await page.locator("#subscribers").inner_text() == "5"
    assert not await critical_violations(page)


async def test_a_scheduled_broadcast_is_cancelled_from_its_page(page: Any, acme: Keys) -> None:
    topic = await _topic(acme, 2)
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    broadcast_id = await _broadcast(acme, topic, send_at=later)
    await page.goto(f"/console/broadcasts/{broadcast_id}")
    await page.locator("#state mark.status-running").wait_for()
    await page.get_by_role("button", name="Cancel broadcast").click()
    await page.get_by_role("status").get_by_text("Cancel requested").wait_for()
    await page.locator("#state mark.status-cancelled").wait_for()
    final = (await acme.rest.client.get(f"/v1/broadcasts/{broadcast_id}")).json()
    assert (final["status"], final["started"]) == ("cancelled", 0)


async def test_another_tenants_webhook_and_broadcast_are_not_found(
    page: Any, console_stack: Stack
) -> None:
    other = await _tenant(console_stack, "other")
    try:
        made = await other.rest.client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/x"})
        assert made.status_code == 201, made.text
        endpoint = made.json()["id"]
        topic = await _topic(other, 1)
        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        theirs = await _broadcast(other, topic, send_at=later)
        for path in (
            f"/console/webhooks/{endpoint}",
            f"/console/broadcasts/{theirs}",
            f"/console/topics/{topic}",
        ):
            answer = await page.goto(path)
            assert answer.status == 404, path
        await page.goto("/console/broadcasts")
        assert theirs not in await page.content()
        csrf = await page.locator('input[name="csrf_token"]').first.input_value()
        status = await page.evaluate(
            """async ([id, token]) => (await fetch(`/console/broadcasts/${id}/cancel`,
                   {method: "POST", headers: {"X-CSRF-Token": token}})).status""",
            [theirs, csrf],
        )
        assert status == 404
        mine = (await other.rest.client.get(f"/v1/broadcasts/{theirs}")).json()
        assert mine["status"] == "running"
        await other.rest.client.post(f"/v1/broadcasts/{theirs}/cancel")
    finally:
        await other.close()
