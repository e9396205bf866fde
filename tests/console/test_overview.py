"""The console's overview against the real app in this process on a real PostgreSQL
database: its numbers for notifications seeded in known states, its links to the failing
ones, and what it never counts (another tenant's, a live one for a test key). The chart
macro and the windows are checked on their own in the fast subset. The screenshots are
made by ``tests/console/test_console_browser.py``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

import httpx
import pytest
from sqlalchemy import insert

from api.console.rendering import TEMPLATES
from api.services import overview
from herald.db import Notification, NotificationEvent, make_engine
from herald.settings import Settings
from herald.tenants import ensure_tenant, issue_api_key
from tests.api.in_process import in_process_client, in_process_settings, migrated_database
from tests.console.support import sign_in
from tests.harness import new_run_id

NOW = datetime.now(UTC)
OURS = "SMTP 550 5.1.1 mailbox unavailable for ours"
THEIRS = "Twilio 21211 invalid number, only theirs"


@pytest.fixture(scope="module")
def database() -> Iterator[Settings]:
    settings = in_process_settings(api_key_cache_seconds=300.0, console_secure_cookie=False)
    with migrated_database(settings) as made:
        yield made


@pytest.fixture
async def client(database: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process_client(database) as made:
        yield made


class Seeded:
    """A tenant's notifications in known states, by name."""

    def __init__(self, tenant_id: uuid.UUID, ids: dict[str, uuid.UUID]) -> None:
        self.tenant_id, self.ids = tenant_id, ids


def _row(
    tenant_id: uuid.UUID,
    channel: str,
    status: str,
    ago: timedelta,
    *,
    error: str | None = None,
    test: bool = False,
) -> dict[str, Any]:
    ended = NOW - ago
    return {
        "id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "channel": channel,
        "user_id": "ada",
        "template": "welcome",
        "status": status,
        "cycle": 1,
        "attempts": 1,
        "last_error": error,
        "test": test,
        # Accepted 2 s before it was sent (the latency the overview reports).
        "created_at": ended - timedelta(seconds=2),
        "updated_at": ended,
    }


async def _seed(settings: Settings, rows: dict[str, dict[str, Any]]) -> None:
    """The rows, and a ``sent`` event 2 s after acceptance for those that were sent."""
    sent = [
        {
            "notification_id": row["id"],
            "event_key": "1:sent:1",
            "status": "sent",
            "cycle": 1,
            "attempt": 1,
            "at": row["created_at"] + timedelta(seconds=2),
        }
        for row in rows.values()
        if row["status"] in ("sent", "delivered", "undelivered")
    ]
    engine = make_engine(settings, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(Notification), list(rows.values()))
            if sent:
                await conn.execute(insert(NotificationEvent), sent)
    finally:
        await engine.dispose()


async def _tenant(settings: Settings, **key: Any) -> tuple[uuid.UUID, str]:
    engine = make_engine(settings, pool_size=1)
    try:
        tenant = await ensure_tenant(engine, f"overview-{new_run_id()}")
        made, _ = await issue_api_key(engine, tenant.id, **key)
        return tenant.id, made
    finally:
        await engine.dispose()


MINUTES_AGO = timedelta(minutes=3)
HOURS_AGO = timedelta(hours=3)


@pytest.fixture(scope="module")
async def ours(database: Settings) -> tuple[Seeded, str]:
    tenant_id, key = await _tenant(database)
    rows = {
        # In the last hour (and so the day): email 2 delivered, 1 sent, 1 failed,
        # 1 suppressed; sms 1 sent.
        "e-delivered-1": _row(tenant_id, "email", "delivered", MINUTES_AGO),
        "e-delivered-2": _row(tenant_id, "email", "delivered", MINUTES_AGO),
        "e-sent": _row(tenant_id, "email", "sent", MINUTES_AGO),
        "e-failed": _row(tenant_id, "email", "failed", MINUTES_AGO, error=OURS),
        "e-suppressed": _row(tenant_id, "email", "suppressed", MINUTES_AGO, error="opted out"),
        "s-sent": _row(tenant_id, "sms", "sent", MINUTES_AGO),
        # Earlier today: email 1 more sent, 1 more failed for the same reason.
        "e-sent-earlier": _row(tenant_id, "email", "sent", HOURS_AGO),
        "e-failed-earlier": _row(tenant_id, "email", "failed", HOURS_AGO, error=OURS),
        # Still under way, or over a day ago: counted nowhere.
        "e-sending": _row(tenant_id, "email", "sending", MINUTES_AGO),
        "e-yesterday": _row(tenant_id, "email", "failed", timedelta(hours=30), error=OURS),
        # A test key's: a live key sees it (push 1 sent), a test key sees only it.
        "p-test": _row(tenant_id, "push", "sent", MINUTES_AGO, test=True),
    }
    await _seed(database, rows)
    # Another tenant, busy in the same minutes, with a reason of its own.
    other_id, _ = await _tenant(database)
    await _seed(
        database,
        {
            f"x{n}": _row(other_id, channel, status, MINUTES_AGO, error=THEIRS)
            for n, (channel, status) in enumerate(
                [("email", "failed"), ("email", "delivered"), ("sms", "failed")] * 4
            )
        },
    )
    return Seeded(tenant_id, {name: row["id"] for name, row in rows.items()}), key


def _card(page: str, channel: str, window: str) -> str:
    found = re.search(
        rf'<article class="chart-card" data-channel="{channel}" data-window="{window}">'
        r"(.*?)</article>",
        page,
        re.S,
    )
    assert found, (channel, window)
    return found.group(1)


def _totals(page: str, channel: str, window: str) -> str:
    found = re.search(r'<p class="chart-totals">(.*?)</p>', _card(page, channel, window), re.S)
    assert found
    return " ".join(found.group(1).split())


def _expect(delivered: int = 0, sent: int = 0, failed: int = 0, suppressed: int = 0) -> str:
    return (
        f"{delivered} delivered, {sent} sent, {failed} failed or undelivered, "
        f"{suppressed} suppressed"
    )


async def test_the_overview_counts_each_channels_outcomes_of_the_hour_and_day(
    client: httpx.AsyncClient, ours: tuple[Seeded, str]
) -> None:
    _, key = ours
    await sign_in(client, key)
    home = await client.get("/console/", follow_redirects=False)
    assert home.headers["location"] == "/console/overview"
    answer = await client.get("/console/overview")
    assert answer.status_code == 200, answer.text
    page = answer.text

    assert _totals(page, "email", "hour") == _expect(2, 1, 1, 1)
    assert _totals(page, "email", "day") == _expect(2, 2, 2, 1)
    # Another tenant's failed SMS are not ours; our test push is (a live key sees it).
    assert _totals(page, "sms", "hour") == _expect(0, 1, 0, 0)
    assert _totals(page, "push", "day") == _expect(0, 1, 0, 0)
    # Each chart is an image with a title and a description, and its numbers beside it.
    card = _card(page, "email", "hour")
    assert 'role="img"' in card and "<title id=" in card and "<desc id=" in card
    assert card.count('class="outcome-delivered"') == 1  # one 5-minute bucket had them
    assert "<caption>email, in the last hour (UTC)</caption>" in card

    # Success over the day: 6 sent or delivered (email 4, sms 1, push 1) of 8 sent or failed.
    success = re.search(r'data-kpi="success">\s*<p class="kpi-value">([^<]+)</p>', page)
    assert success and unescape(success.group(1)).strip() == "75.00 %"
    assert "below</mark> the 99.5 % target" in page

    # Accept→sent: 2 s for every send.
    latency = re.search(r'<tr data-channel="email">(.*?)</tr>', page, re.S)
    assert latency and latency.group(1).count("2.0 s") == 4
    assert "<td>4</td>" in latency.group(1)  # email sends of the day with a sent event


async def test_a_failure_reason_links_to_the_failing_notifications_only(
    client: httpx.AsyncClient, ours: tuple[Seeded, str]
) -> None:
    seeded, key = ours
    await sign_in(client, key)
    page = (await client.get("/console/overview")).text
    failures = re.search(r'<table id="failures">(.*?)</table>', page, re.S)
    assert failures
    rows = re.findall(r"<tr data-reason.*?</tr>", failures.group(1), re.S)
    assert len(rows) == 1 and THEIRS not in page  # another tenant's reason never shows
    row = unescape(rows[0])
    assert OURS in row and "<td>2</td>" in row
    latest = seeded.ids["e-failed"]  # the newer of the two
    assert f'href="/console/notifications/{latest}"' in row
    listed = re.search(r'<a href="(/console/notifications\?[^"]+)">', row)
    assert listed
    shown = (await client.get(listed.group(1))).text
    failing = {seeded.ids["e-failed"], seeded.ids["e-failed-earlier"], seeded.ids["e-yesterday"]}
    assert {uuid.UUID(found) for found in re.findall(r'data-notification="([^"]+)"', shown)} == (
        failing
    )
    assert "Error starts with" in shown


async def test_a_test_key_sees_only_test_notifications(
    database: Settings, client: httpx.AsyncClient, ours: tuple[Seeded, str]
) -> None:
    seeded, _ = ours
    engine = make_engine(database, pool_size=1)
    try:
        test_key, _ = await issue_api_key(engine, seeded.tenant_id, test=True)
    finally:
        await engine.dispose()
    await sign_in(client, test_key)
    page = (await client.get("/console/overview")).text
    assert (
        _totals(page, "push", "hour")
        == "0 delivered, 1 sent, 0 failed or undelivered, 0 suppressed"
    )
    assert (
        _totals(page, "email", "day")
        == "0 delivered, 0 sent, 0 failed or undelivered, 0 suppressed"
    )
    assert "No notification failed in the last 24 hours." in page
    assert "test notifications only" in page


async def test_the_overview_needs_the_read_scope(
    database: Settings, client: httpx.AsyncClient
) -> None:
    _, admin_only = await _tenant(database, scopes=frozenset({"admin"}))
    await sign_in(client, admin_only)
    refused = await client.get("/console/overview")
    assert refused.status_code == 403 and "needs scope &#39;read&#39;" in refused.text


async def test_the_error_filter_refuses_hostile_input_and_finds_nothing_of_another_tenant(
    client: httpx.AsyncClient, ours: tuple[Seeded, str]
) -> None:
    _, key = ours
    await sign_in(client, key)
    nul = await client.get("/console/notifications", params={"status": "failed", "error": "a\x00b"})
    assert nul.status_code == 422 and "NUL" in nul.text
    huge = await client.get("/console/notifications", params={"error": "x" * 10_000})
    assert huge.status_code == 422
    theirs = await client.get("/console/notifications", params={"error": THEIRS})
    assert theirs.status_code == 200 and "No notifications match these filters" in theirs.text
    # LIKE's wildcards are text here, not patterns.
    wildcard = await client.get("/console/notifications", params={"error": "%"})
    assert "No notifications match these filters" in wildcard.text
    # The overview takes no input; whatever is added to its URL changes nothing.
    odd = await client.get("/console/overview", params={"tenant": str(uuid.uuid4()), "x": "\x00"})
    assert odd.status_code == 200 and THEIRS not in odd.text


@pytest.mark.fast
def test_windows_are_aligned_to_the_clock_and_end_with_the_current_bucket() -> None:
    now = datetime(2026, 12, 5, 10, 7, 30, tzinfo=UTC)
    assert overview.HOUR.start(now) == datetime(2026, 12, 5, 9, 10, tzinfo=UTC)
    assert overview.DAY.start(now) == datetime(2026, 12, 4, 11, 0, tzinfo=UTC)
    assert overview.Success(995, 1000).met is True
    assert overview.Success(994, 1000).met is False
    assert overview.Success(0, 0).rate is None


@pytest.mark.fast
def test_the_chart_stacks_each_buckets_outcomes_to_scale() -> None:
    start = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
    buckets = [overview.Bucket(start + timedelta(minutes=5 * i)) for i in range(12)]
    buckets[3].counts.update(delivered=6, failed=2)
    buckets[7].counts.update(sent=4)
    series = overview.ChannelSeries("email", buckets)
    charts = TEMPLATES.env.get_template("overview/_charts.html").module
    svg = str(
        charts.stacked_bars(  # type: ignore[attr-defined]
            series, list(overview.OUTCOMES), "c", "in the last hour", "5 minutes", "%H:%M"
        )
    )
    heights = {
        klass: float(height)
        for klass, height in re.findall(r'<rect class="outcome-(\w+)"[^>]*height="([\d.]+)"', svg)
    }
    # The tallest bar (8) fills the plot; the others are in proportion.
    assert heights["delivered"] + heights["failed"] == pytest.approx(112.0)
    assert heights["sent"] == pytest.approx(112.0 / 2)
    assert '<title id="c-title">email, in the last hour, per 5 minutes</title>' in svg
    assert "6 delivered, 4 sent, 2 failed or undelivered, 0 suppressed" in svg
    assert "10:15 UTC: 6 delivered, 0 sent, 2 failed or undelivered, 0 suppressed" in svg
