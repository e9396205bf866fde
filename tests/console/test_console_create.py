"""Creating from the console: templates, users, topics and their subscribers, and
broadcasts (reviewed with a sample, then confirmed), through the same request models and
services as the REST API, so a refusal reads the same and shows next to its field.

Most of it runs against the real app in this process on a real PostgreSQL database (a
broadcast's review needs no Temporal); the last test drives Chromium against a real
Herald and reads the email a broadcast made entirely in the console sent to the SMTP
sink."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from api.console.forms import WHOLE_FORM, field_errors, json_object, user_ids
from api.errors import ApiError
from api.schemas.broadcasts import BroadcastIn
from api.schemas.topics import TopicIn
from api.services import topics
from devtools.sinks import Sinks
from herald.db import make_engine
from herald.settings import Settings
from herald.tenants import ensure_tenant, issue_api_key
from tests.api.in_process import in_process_client, in_process_settings, migrated_database
from tests.console.support import sign_in
from tests.console.test_console_browser import WAIT_MS, _signed_in, browser
from tests.harness import CHROMIUM, Stack, new_run_id

__all__ = ["browser"]  # the browser fixture, shared with the other console browser tests

NUL = "a\x00b"


@pytest.fixture(scope="module")
def database() -> Iterator[Settings]:
    settings = in_process_settings(console_secure_cookie=False)
    with migrated_database(settings) as made:
        yield made


@pytest.fixture
async def client(database: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process_client(database) as made:
        yield made


async def _tenant_key(
    settings: Settings, tenant: str | None = None, **kind: Any
) -> tuple[uuid.UUID, str]:
    engine = make_engine(settings, pool_size=1)
    try:
        made = await ensure_tenant(engine, tenant or f"create-{new_run_id()}")
        key, _ = await issue_api_key(engine, made.id, **kind)
        return made.id, key
    finally:
        await engine.dispose()


async def _key(settings: Settings, tenant: str | None = None, **kind: Any) -> str:
    return (await _tenant_key(settings, tenant, **kind))[1]


async def _topic(settings: Settings, tenant_id: uuid.UUID, key: str) -> None:
    engine = make_engine(settings, pool_size=1)
    try:
        await topics.put_topic(engine, tenant_id, key, TopicIn())
    finally:
        await engine.dispose()


def _error(page: str, field: str) -> str:
    """The refusal shown next to ``field`` (unescaped enough to compare)."""
    found = re.search(rf'data-error-for="{field}">([^<]*)<', page)
    assert found, f"no error next to {field!r} on the page"
    return found.group(1).replace("&#39;", "'").replace("&#34;", '"').replace("&quot;", '"')


async def _rest_refusal(client: httpx.AsyncClient, key: str, path: str, body: Any) -> str:
    answer = await client.post(path, json=body, headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    return str(detail if isinstance(detail, str) else detail[0]["msg"])


@pytest.mark.fast
def test_each_refusal_goes_to_the_form_field_it_names() -> None:
    renames = {"audience.topic": "topic", "audience.user_ids": "user_ids"}
    with pytest.raises(ValidationError) as listed:
        BroadcastIn.model_validate(
            {"channel": "fax", "template": "t", "audience": {"user_ids": ["ok", "bad!id"]}}
        )
    errors = field_errors(listed.value, renames=renames)
    assert set(errors) == {"channel", "user_ids"}
    assert errors["user_ids"].startswith("1 (bad!id): String should match pattern")
    with pytest.raises(ValidationError) as whole:
        BroadcastIn.model_validate(
            {"channel": "email", "template": "t", "data": {"x": NUL}, "audience": {"topic": "a"}}
        )
    assert "NUL" in field_errors(whole.value, fields=frozenset({"data"}))["data"]
    assert set(field_errors(whole.value)) == {WHOLE_FORM}  # no field named: above the form
    exists = ApiError(409, "template 't' exists")
    assert field_errors(exists, conflict="key") == {"key": "template 't' exists"}
    assert field_errors(exists) == {WHOLE_FORM: "template 't' exists"}
    with pytest.raises(ApiError) as malformed:
        json_object("{nope", "data")
    assert (malformed.value.field, malformed.value.status_code) == ("data", 422)
    with pytest.raises(ApiError):
        json_object("[]", "data")
    assert user_ids(" ada, bob\n\ncy\tdee ") == ["ada", "bob", "cy", "dee"]


async def test_a_template_user_and_topic_made_in_the_console_are_what_rest_reads(
    database: Settings, client: httpx.AsyncClient
) -> None:
    key = await _key(database)
    csrf = await sign_in(client, key)
    rest = {"Authorization": f"Bearer {key}"}
    for path in ("/console/templates", "/console/users", "/console/topics", "/console/broadcasts"):
        listed = (await client.get(path)).text
        assert f'href="{path}/-/new" role="button"' in listed, path

    made = await client.post(
        "/console/templates",
        data={
            "csrf_token": csrf,
            "key": "welcome",
            "channel": "email",
            "locale": "en",
            "category": "transactional",
            "subject": "Hi {{ name }}",
            "body": "<p>Hello {{ name }}</p>",
        },
    )
    assert made.status_code == 303
    assert made.headers["location"] == "/console/templates/welcome?channel=email&locale=en&saved=1"
    stored = (await client.get("/v1/templates/welcome", headers=rest)).json()["versions"][0]
    assert (stored["version"], stored["subject"]) == (1, "Hi {{ name }}")
    again = await client.post(
        "/console/templates",
        data={
            "csrf_token": csrf,
            "key": "welcome",
            "channel": "email",
            "subject": "x",
            "body": "y",
        },
    )
    assert again.status_code == 409 and "exists" in _error(again.text, "key")

    user = await client.post(
        "/console/users",
        data={
            "csrf_token": csrf,
            "id": "ada@example",
            "email": "ada@example.com",
            "locale": "en",
            "preferences_offered": "true",
            "preferences": ["email", "push"],
        },
    )
    assert user.status_code == 303
    assert user.headers["location"] == "/console/users/ada%40example?done=created"
    read = (await client.get("/v1/users/ada@example", headers=rest)).json()
    assert read["email"] == "ada@example.com"
    # Every channel's box was on the form: the unticked ones are opt-outs.
    assert read["preferences"] == {
        "email": True,
        "sms": False,
        "push": True,
        "inapp": False,
        "chat": False,
    }
    assert "User created." in (await client.get(user.headers["location"])).text

    topic = await client.post(
        "/console/topics", data={"csrf_token": csrf, "key": "news", "name": "Newsletter"}
    )
    assert (
        topic.status_code == 303
        and topic.headers["location"] == "/console/topics/news?done=created"
    )
    added = await client.post(
        "/console/topics/news/subscribers",
        data={"csrf_token": csrf, "user_ids": "ada@example, bob\ncy  bob"},
    )
    assert added.status_code == 303
    page = (await client.get(added.headers["location"])).text
    assert "Added 3 new subscribers." in page and '<dd id="subscribers">3</dd>' in page
    assert re.findall(r'data-subscriber="([^"]+)"', page) == ["ada@example", "bob", "cy"]
    removed = await client.post(
        "/console/topics/news/subscribers/remove", data={"csrf_token": csrf, "user_id": "bob"}
    )
    assert removed.status_code == 303
    assert (await client.get("/v1/topics/news", headers=rest)).json()["subscribers"] == 2


async def test_a_topics_subscribers_are_listed_a_page_at_a_time(
    database: Settings, client: httpx.AsyncClient
) -> None:
    key = await _key(database)
    csrf = await sign_in(client, key)
    await client.post("/console/topics", data={"csrf_token": csrf, "key": "many"})
    ids = [f"u{number:03}" for number in range(120)]
    await client.post(
        "/console/topics/many/subscribers", data={"csrf_token": csrf, "user_ids": " ".join(ids)}
    )
    seen: list[str] = []
    path = "/console/topics/many"
    while path:
        page = (await client.get(path)).text
        seen += re.findall(r'data-subscriber="([^"]+)"', page)
        more = re.search(r'href="(/console/topics/many\?cursor=[^"]+)">More subscribers', page)
        path = more.group(1).replace("&amp;", "&") if more else ""
    assert seen == ids  # every one once, in order, over three pages
    forged = await client.get("/console/topics/many?cursor=not-a-cursor")
    assert forged.status_code == 422


async def test_refusals_read_as_over_rest_and_show_next_to_their_field(
    database: Settings, client: httpx.AsyncClient
) -> None:
    key = await _key(database)
    csrf = await sign_in(client, key)

    async def refused(path: str, field: str, **form: Any) -> str:
        answer = await client.post(path, data={"csrf_token": csrf, **form})
        assert answer.status_code == 422, (path, form, answer.status_code)
        assert 'aria-invalid="true"' in answer.text
        return _error(answer.text, field)

    template = {"key": "t", "channel": "email", "subject": "s", "body": "b"}
    message = await refused("/console/templates", "body", **template | {"body": NUL})
    assert message == await _rest_refusal(client, key, "/v1/templates", template | {"body": NUL})
    assert "NUL" in message
    huge = "k" * 20_000
    assert "at most 128 characters" in await refused(
        "/console/templates", "key", **template | {"key": huge}
    )
    assert "email template needs a subject" in await refused(
        "/console/templates", "subject", **template | {"subject": ""}
    )
    assert "'email', 'sms', 'push', 'chat' or 'inapp'" in await refused(
        "/console/templates", "channel", **template | {"channel": "pigeon"}
    )

    message = await refused("/console/users", "id", id="bad id!")
    assert message == await _rest_refusal(client, key, "/v1/users", {"id": "bad id!"})
    assert "should match pattern" in message
    assert "should match pattern" in await refused("/console/users", "id", id=NUL)
    assert "E.164" in await refused("/console/users", "phone", id="ok", phone="0123")
    assert "unknown IANA timezone" in await refused(
        "/console/users", "timezone", id="ok", timezone="Mars/Base"
    )
    assert "Field required" in await refused("/console/users", "id")

    assert "should match pattern" in await refused("/console/topics", "key", key=NUL)
    assert "at most 256" in await refused("/console/topics", "name", key="ok", name="n" * 300)
    await client.post("/console/topics", data={"csrf_token": csrf, "key": "news"})
    message = await refused("/console/topics/news/subscribers", "user_ids", user_ids="fine\nbad!id")
    assert message.startswith("1 (bad!id): String should match pattern"), message
    assert (await client.get("/console/topics/news")).text.count("data-subscriber=") == 0

    review = "/console/broadcasts/-/review"
    broadcast = {"audience": "all_users", "template": "t", "channel": "email"}
    assert "not JSON" in await refused(review, "data", **broadcast, data="{not json")
    assert "JSON object" in await refused(review, "data", **broadcast, data="[1]")
    assert "NUL" in await refused(review, "data", **broadcast, data='{"x": "\\u0000"}')
    assert "should match pattern" in await refused(
        review, "user_ids", **broadcast | {"audience": "user_ids"}, user_ids="bad!id"
    )
    assert "name exactly one audience" in await refused(
        review, "audience", **broadcast | {"audience": "nobody"}
    )
    assert "topic 'missing' not found" in await refused(
        review, "topic", **broadcast | {"audience": "topic"}, topic="missing"
    )
    assert "template 't' not found" in await refused(review, "template", **broadcast)
    # Starting one goes through the same checks (here before Temporal is reached).
    assert "not JSON" in await refused(
        "/console/broadcasts", "data", **broadcast, data="{", confirmation="x"
    )


async def test_a_broadcast_is_reviewed_with_a_sample_for_one_recipient_before_it_starts(
    database: Settings, client: httpx.AsyncClient
) -> None:
    key = await _key(database)
    csrf = await sign_in(client, key)
    await client.post(
        "/console/templates",
        data={
            "csrf_token": csrf,
            "key": "promo",
            "channel": "email",
            "subject": "Hi {{ name }}",
            "body": "<p>{{ greeting }}, {{ name }}</p>",
        },
    )
    await client.post("/console/users", data={"csrf_token": csrf, "id": "ada", "locale": "en"})
    await client.post("/console/topics", data={"csrf_token": csrf, "key": "fans"})
    await client.post(
        "/console/topics/fans/subscribers", data={"csrf_token": csrf, "user_ids": "ada zed"}
    )
    form = await client.get("/console/broadcasts/-/new?topic=fans")
    assert 'name="topic" value="fans"' in form.text
    assert '<option value="promo">' in form.text  # the tenant's templates are suggested

    broadcast = {"audience": "topic", "topic": "fans", "template": "promo", "channel": "email"}
    missing = await client.post(
        "/console/broadcasts/-/review",
        data={"csrf_token": csrf, **broadcast, "data": '{"name": "Ada"}'},
    )
    assert missing.status_code == 422
    assert "missing variable 'greeting'" in _error(missing.text, "data")
    # Without a review's confirmation token, starting one shows the review instead.
    for path in ("/console/broadcasts/-/review", "/console/broadcasts"):
        reviewed = await client.post(
            path,
            data={"csrf_token": csrf, **broadcast, "data": '{"name": "Ada", "greeting": "Hey"}'},
        )
        assert reviewed.status_code == 200
        assert "reaches <strong>2</strong> recipients" in reviewed.text
        assert "As <code>ada</code> would get it" in reviewed.text
        assert '<dd id="preview-subject">Hi Ada</dd>' in reviewed.text
        assert "Start broadcast to 2 recipients" in reviewed.text
    assert "No broadcasts" in (await client.get("/console/broadcasts")).text


async def test_a_change_without_the_csrf_token_is_refused_and_changes_nothing(
    database: Settings, client: httpx.AsyncClient
) -> None:
    key = await _key(database)
    csrf = await sign_in(client, key)
    await client.post("/console/topics", data={"csrf_token": csrf, "key": "news"})
    rest = {"Authorization": f"Bearer {key}"}
    attempts = [
        ("/console/templates", {"key": "t", "channel": "sms", "body": "b"}),
        ("/console/users", {"id": "ada"}),
        ("/console/topics", {"key": "other"}),
        ("/console/topics/news/subscribers", {"user_ids": "ada"}),
        ("/console/topics/news/subscribers/remove", {"user_id": "ada"}),
        ("/console/broadcasts/-/review", {"audience": "all_users"}),
        ("/console/broadcasts", {"audience": "all_users", "confirmation": "x"}),
    ]
    for path, form in attempts:
        for token in ({}, {"csrf_token": "forged"}):
            answer = await client.post(path, data=form | token)
            assert answer.status_code == 403, path
    assert (await client.get("/v1/templates/t", headers=rest)).status_code == 404
    assert (await client.get("/v1/users/ada", headers=rest)).status_code == 404
    assert (await client.get("/v1/topics/other", headers=rest)).status_code == 404
    assert (await client.get("/v1/topics/news", headers=rest)).json()["subscribers"] == 0


@pytest.mark.parametrize(
    "kind",
    [
        {"test": True},
        {"scopes": frozenset({"admin", "read", "send"})},
    ],
    ids=["test key", "no manage scope"],
)
async def test_a_key_that_may_not_change_them_gets_403(
    database: Settings, client: httpx.AsyncClient, kind: dict[str, Any]
) -> None:
    tenant = f"create-{new_run_id()}"
    tenant_id, live = await _tenant_key(database, tenant)
    key = await _key(database, tenant, **kind)
    await _topic(database, tenant_id, "news")
    csrf = await sign_in(client, key)
    assert "/console/templates/-/new" not in (await client.get("/console/templates")).text
    for path in ("/console/templates/-/new", "/console/users/-/new", "/console/topics/-/new"):
        assert (await client.get(path)).status_code == 403, path
    attempts = [
        ("/console/templates", {"key": "t", "channel": "sms", "body": "b"}),
        ("/console/users", {"id": "ada"}),
        ("/console/topics", {"key": "other"}),
        ("/console/topics/news/subscribers", {"user_ids": "ada"}),
        ("/console/topics/news/subscribers/remove", {"user_id": "ada"}),
    ]
    for path, form in attempts:
        answer = await client.post(path, data=form | {"csrf_token": csrf})
        assert answer.status_code == 403, path
        assert "scope &#39;manage&#39;" in answer.text or "test key" in answer.text
    rest = {"Authorization": f"Bearer {live}"}
    assert (await client.get("/v1/topics/news", headers=rest)).json()["subscribers"] == 0
    assert (await client.get("/v1/users/ada", headers=rest)).status_code == 404


async def test_another_tenants_topic_is_not_found(
    database: Settings, client: httpx.AsyncClient
) -> None:
    their_tenant, theirs = await _tenant_key(database)
    await _topic(database, their_tenant, "theirs")
    key = await _key(database)
    csrf = await sign_in(client, key)
    assert (await client.get("/console/topics/theirs")).status_code == 404
    for path, form in [
        ("/console/topics/theirs/subscribers", {"user_ids": "ada"}),
        ("/console/topics/theirs/subscribers", {"user_ids": "bad!id"}),  # 404 first
        ("/console/topics/theirs/subscribers/remove", {"user_id": "ada"}),
    ]:
        answer = await client.post(path, data=form | {"csrf_token": csrf})
        assert answer.status_code == 404, path
    review = await client.post(
        "/console/broadcasts/-/review",
        data={
            "csrf_token": csrf,
            "audience": "topic",
            "topic": "theirs",
            "template": "t",
            "channel": "email",
        },
    )
    assert review.status_code == 422 and "not found" in _error(review.text, "topic")
    rest = {"Authorization": f"Bearer {theirs}"}
    assert (await client.get("/v1/topics/theirs", headers=rest)).json()["subscribers"] == 0


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Debian's chromium at {CHROMIUM}")
async def test_a_template_user_topic_and_broadcast_made_in_the_console_reach_the_smtp_sink(
    browser: Any, stack: Stack, sinks: Sinks
) -> None:
    tenant = f"create-{new_run_id()}"
    page = await _signed_in(browser, stack, await _key(stack.settings, tenant))
    run = uuid.uuid4().hex[:8]
    address = f"ada-{run}@example.com"

    await page.goto("/console/templates")
    await page.get_by_role("button", name="New template").click()
    await page.get_by_label("Key").fill(f"hello-{run}")
    await page.get_by_label("Subject (email)").fill("Hello {{ name }}")
    await page.get_by_label("Body (HTML for email)").fill("<p>Hi {{ name }}, {{ news }}</p>")
    await page.get_by_role("button", name="Create template").click()
    await page.get_by_text("Saved as version 1.").wait_for()

    await page.goto("/console/users")
    await page.get_by_role("button", name="New user").click()
    await page.get_by_label("Id", exact=True).fill(f"ada-{run}")
    await page.get_by_label("Email", exact=True).fill(address)
    await page.get_by_role("button", name="Create user").click()
    await page.get_by_text("User created.").wait_for()

    await page.goto("/console/topics")
    await page.get_by_role("button", name="New topic").click()
    await page.get_by_label("Key").fill(f"news-{run}")
    await page.get_by_role("button", name="Create topic").click()
    await page.get_by_text("Topic created.").wait_for()
    await page.get_by_label("User ids").fill(f"ada-{run}")
    await page.get_by_role("button", name="Add subscribers").click()
    await page.get_by_text("Added 1 new subscriber.").wait_for()

    await page.get_by_role("button", name="Broadcast to this topic").click()
    await page.get_by_label("Template").fill(f"hello-{run}")
    await page.get_by_label("Data (JSON)").fill('{"name": "Ada"}')
    await page.get_by_role("button", name="Review").click()
    await page.get_by_text("missing variable 'news'").wait_for()  # refused next to the data
    await page.get_by_label("Data (JSON)").fill('{"name": "Ada", "news": "all is well"}')
    await page.get_by_role("button", name="Review").click()
    await page.locator("#preview-subject").get_by_text("Hello Ada").wait_for()
    await page.get_by_role("button", name="Start broadcast to 1 recipient").click()
    await page.get_by_text("Broadcast started.").wait_for()
    await page.locator("#state mark.status-completed").wait_for(timeout=WAIT_MS)

    received: list[Any] = []
    deadline = 30.0
    waited = 0.0
    while not received and waited < deadline:
        received = sinks.state.received("email", to=address)
        if not received:
            await page.wait_for_timeout(200)
            waited += 0.2
    assert len(received) == 1, f"no email to {address} within {deadline}s"
    await page.context.close()
