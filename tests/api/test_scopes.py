"""What an API key may do: its scopes on every route and console page, a test key that
reads but does not change what the tenant shares, the tenant's rate limit across all its
keys, and the per-tenant caps; against the real app in this process on a real PostgreSQL
database and Redis (nothing here reaches Temporal)."""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi.routing import APIRoute

import api.routes
from herald.db import API_KEY_SCOPES, make_engine
from herald.settings import Settings
from herald.tenants import ALL_SCOPES, ensure_tenant, issue_api_key, set_rate_limit
from tests.api.in_process import in_process_client, in_process_settings, migrated_database
from tests.console.support import csrf_of
from tests.harness import new_run_id

MAX_KEYS, MAX_WEBHOOKS, MAX_TOPICS, MAX_TEMPLATES = 3, 2, 3, 2


@pytest.fixture(scope="module")
def database() -> Iterator[Settings]:
    settings = in_process_settings(
        api_key_cache_seconds=300.0,
        console_secure_cookie=False,
        webhooks_allow_private=True,
        max_api_keys=MAX_KEYS,
        max_webhooks=MAX_WEBHOOKS,
        max_topics=MAX_TOPICS,
        max_templates=MAX_TEMPLATES,
    )
    with migrated_database(settings) as made:
        yield made


@pytest.fixture
async def client(database: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process_client(database) as made:
        yield made


class Tenant:
    """A fresh tenant of the test's database, whose keys are made with chosen scopes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = f"scopes-{new_run_id()}"

    async def key(self, *scopes: str, test: bool = False) -> dict[str, str]:
        """Headers carrying a new key with ``scopes`` (all four if none)."""
        engine = make_engine(self.settings, pool_size=1)
        try:
            tenant = await ensure_tenant(engine, self.name)
            key, _ = await issue_api_key(
                engine, tenant.id, test=test, scopes=frozenset(scopes) or ALL_SCOPES
            )
        finally:
            await engine.dispose()
        return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def tenant(database: Settings) -> Tenant:
    return Tenant(database)


TEMPLATE = {"key": "welcome", "channel": "email", "subject": "Hi", "body": "<p>Hi</p>"}
USER = {"id": "ada", "email": "ada@example.com"}


async def test_each_route_answers_403_naming_the_scope_the_key_lacks(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    send_only = await tenant.key("send")
    refused = await client.put("/v1/templates/welcome", json=TEMPLATE, headers=send_only)
    assert refused.status_code == 403
    assert refused.json()["detail"] == "this API key needs scope 'manage'"
    for method, path in [
        ("GET", "/v1/users"),
        ("GET", "/v1/templates"),
        ("GET", "/v1/topics"),
        ("GET", "/v1/webhooks"),
    ]:
        answer = await client.request(method, path, headers=send_only)
        assert (answer.status_code, answer.json()["detail"]) == (
            403,
            "this API key needs scope 'read'",
        ), path
    keys = await client.get("/v1/api-keys", headers=send_only)
    assert keys.json()["detail"] == "this API key needs scope 'admin'"
    # A sender reads what it sent: the notification list is open to it.
    assert (await client.get("/v1/notifications", headers=send_only)).status_code == 200
    assert (await client.get("/v1/broadcasts", headers=send_only)).status_code == 200

    read_only = await tenant.key("read")
    for path in ("/v1/notifications", "/v1/notifications/batch", "/v1/broadcasts"):
        # Refused before the body is even looked at: nothing is accepted.
        answer = await client.post(path, json={}, headers=read_only)
        assert (answer.status_code, answer.json()["detail"]) == (
            403,
            "this API key needs scope 'send'",
        ), path
    nobody = uuid.uuid4()
    for path in (f"/v1/notifications/{nobody}/cancel", f"/v1/notifications/{nobody}/resend"):
        assert (await client.post(path, headers=read_only)).status_code == 403
    assert (await client.get("/v1/users", headers=read_only)).status_code == 200
    assert (await client.post("/v1/users", json=USER, headers=read_only)).status_code == 403

    manager = await tenant.key("manage")
    assert (await client.post("/v1/users", json=USER, headers=manager)).status_code == 201
    assert (await client.get("/v1/users/ada", headers=manager)).status_code == 403
    answer = await client.post("/v1/notifications", json={}, headers=manager)
    assert answer.json()["detail"] == "this API key needs scope 'send'"


async def test_a_test_key_reads_shared_resources_but_cannot_change_them(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    live = await tenant.key()
    assert (await client.post("/v1/users", json=USER, headers=live)).status_code == 201
    assert (await client.post("/v1/templates", json=TEMPLATE, headers=live)).status_code == 201

    test = await tenant.key(test=True)  # every scope, but a test key
    for method, path, body in [
        ("POST", "/v1/users", {"id": "bob"}),
        ("PUT", "/v1/users/ada", {"email": "evil@example.com"}),
        ("DELETE", "/v1/users/ada", None),
        ("POST", "/v1/users/ada/devices", {"token": "t", "platform": "ios"}),
        ("POST", "/v1/templates", TEMPLATE | {"key": "other"}),
        ("PUT", "/v1/templates/welcome", TEMPLATE | {"body": "<p>pwned</p>"}),
        ("PUT", "/v1/topics/news", {}),
        ("POST", "/v1/topics/news/subscribers", {"user_ids": ["ada"]}),
        ("DELETE", "/v1/topics/news/subscribers/ada", None),
        ("POST", "/v1/webhooks", {"url": "http://127.0.0.1:9/hook"}),
        ("DELETE", f"/v1/webhooks/{uuid.uuid4()}", None),
    ]:
        answer = await client.request(method, path, json=body, headers=test)
        assert answer.status_code == 403, (path, answer.text)
        assert answer.json()["detail"].startswith("a test key may read but not change"), path

    # Nothing changed, and everything reads as before.
    user = await client.get("/v1/users/ada", headers=test)
    assert (user.status_code, user.json()["email"]) == (200, "ada@example.com")
    versions = (await client.get("/v1/templates/welcome", headers=test)).json()["versions"]
    assert [version["version"] for version in versions] == [1]
    preview = await client.post(
        "/v1/templates/welcome/preview", json={"channel": "email", "data": {}}, headers=test
    )
    assert preview.status_code == 200, preview.text  # a preview changes nothing
    assert (await client.get("/v1/webhooks", headers=test)).status_code == 200
    # Its own kind of key it still manages.
    made = await client.post("/v1/api-keys", json={"kind": "test"}, headers=test)
    assert made.status_code == 201
    assert (
        await client.post("/v1/api-keys", json={"kind": "live"}, headers=test)
    ).status_code == 403


async def test_a_key_is_created_listed_and_used_with_the_scopes_asked_for(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    admin = await tenant.key()
    created = await client.post(
        "/v1/api-keys", json={"scopes": ["read", "send", "read"]}, headers=admin
    )
    assert created.status_code == 201, created.text
    assert created.json()["scopes"] == ["send", "read"]  # documented order, once each
    listed = (await client.get("/v1/api-keys", headers=admin)).json()["items"]
    assert {tuple(item["scopes"]) for item in listed} == {("send", "read"), API_KEY_SCOPES}
    default = (await client.post("/v1/api-keys", json={}, headers=admin)).json()
    assert default["scopes"] == list(API_KEY_SCOPES)

    new_key = {"Authorization": f"Bearer {created.json()['key']}"}
    assert (await client.get("/v1/users", headers=new_key)).status_code == 200
    assert (await client.post("/v1/users", json=USER, headers=new_key)).status_code == 403
    # A key without ``admin`` cannot mint itself a better one.
    escalate = await client.post("/v1/api-keys", json={}, headers=new_key)
    assert escalate.json()["detail"] == "this API key needs scope 'admin'"


@pytest.mark.parametrize(
    "scopes",
    [["superuser"], [], ["send\x00"], ["SEND"], "send", ["send"] * 5, [None], ["a" * 60_000]],
)
async def test_scopes_that_are_not_scopes_are_422_naming_scopes(
    client: httpx.AsyncClient, tenant: Tenant, scopes: object
) -> None:
    admin = await tenant.key()
    answer = await client.post("/v1/api-keys", json={"scopes": scopes}, headers=admin)
    assert answer.status_code == 422, answer.text
    assert all(error["loc"][:2] == ["body", "scopes"] for error in answer.json()["detail"])


async def test_the_tenants_limit_holds_across_all_its_keys(
    client: httpx.AsyncClient, database: Settings, tenant: Tenant
) -> None:
    keys = [await tenant.key() for _ in range(4)]
    engine = make_engine(database, pool_size=1)
    try:
        assert await set_rate_limit(engine, tenant.name, 6)
    finally:
        await engine.dispose()
    answers = [
        (await client.get("/v1/notifications", headers=keys[turn % 4])).status_code
        for turn in range(6)
    ]
    assert answers == [200] * 6
    for key in keys:  # the seventh, from any key, and every one after it
        refused = await client.get("/v1/notifications", headers=key)
        assert refused.status_code == 429, refused.text
        assert 1 <= int(refused.headers["Retry-After"]) <= 10  # a request every 10 s
        assert refused.headers["X-RateLimit-Limit"] == "6"
        assert "for this tenant" in refused.json()["detail"]

    # Another tenant, on the default limit, is untouched.
    other = await Tenant(database).key()
    assert (await client.get("/v1/notifications", headers=other)).status_code == 200


async def test_past_each_cap_creating_one_more_is_409(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    admin = await tenant.key()  # one live key already
    for _ in range(MAX_KEYS - 1):
        assert (await client.post("/v1/api-keys", json={}, headers=admin)).status_code == 201
    refused = await client.post("/v1/api-keys", json={}, headers=admin)
    assert refused.status_code == 409
    assert "HERALD_MAX_API_KEYS" in refused.json()["detail"]
    # Test keys are not live keys; a revoked key frees its place.
    assert (
        await client.post("/v1/api-keys", json={"kind": "test"}, headers=admin)
    ).status_code == 201
    newest = (await client.get("/v1/api-keys", headers=admin)).json()["items"][1]
    assert (await client.delete(f"/v1/api-keys/{newest['id']}", headers=admin)).status_code == 200
    assert (await client.post("/v1/api-keys", json={}, headers=admin)).status_code == 201

    for number in range(MAX_WEBHOOKS):
        made = await client.post(
            "/v1/webhooks", json={"url": f"http://127.0.0.1:9/{number}"}, headers=admin
        )
        assert made.status_code == 201, made.text
    refused = await client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/x"}, headers=admin)
    assert refused.status_code == 409 and "webhook endpoints" in refused.json()["detail"]

    for number in range(MAX_TEMPLATES):
        made = await client.post(
            "/v1/templates", json=TEMPLATE | {"key": f"t{number}"}, headers=admin
        )
        assert made.status_code == 201, made.text
    # More versions, channels and locales of a key are not more keys ...
    assert (
        await client.put("/v1/templates/t0", json=TEMPLATE | {"key": "t0"}, headers=admin)
    ).status_code == 200
    sms = {"key": "t0", "channel": "sms", "body": "Hi"}
    assert (await client.post("/v1/templates", json=sms, headers=admin)).status_code == 201
    # ... a new key is, by POST or PUT.
    for answer in [
        await client.post("/v1/templates", json=TEMPLATE | {"key": "t9"}, headers=admin),
        await client.put("/v1/templates/t9", json=TEMPLATE | {"key": "t9"}, headers=admin),
    ]:
        assert answer.status_code == 409 and "template keys" in answer.json()["detail"]


async def test_racing_creations_never_pass_the_cap(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    admin = await tenant.key()
    answers = await asyncio.gather(
        *(client.put(f"/v1/topics/topic-{number}", headers=admin) for number in range(12))
    )
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [201] * MAX_TOPICS + [409] * (12 - MAX_TOPICS), codes
    assert "HERALD_MAX_TOPICS" in next(a for a in answers if a.status_code == 409).text
    topics = (await client.get("/v1/topics", headers=admin)).json()["items"]
    assert len(topics) == MAX_TOPICS
    # Renaming one that exists at the cap is no new topic.
    existing = topics[0]["key"]
    renamed = await client.put(f"/v1/topics/{existing}", json={"name": "N"}, headers=admin)
    assert renamed.status_code == 200


async def _console_sign_in(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    form = await client.get("/console/sign-in")
    key = headers["Authorization"].removeprefix("Bearer ")
    return await client.post(
        "/console/sign-in", data={"api_key": key, "csrf_token": csrf_of(form.text)}
    )


async def test_the_console_needs_admin_and_then_the_scope_of_each_page(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    refused = await _console_sign_in(client, await tenant.key("send", "read", "manage"))
    assert refused.status_code == 403
    assert "needs the &#39;admin&#39; scope" in refused.text
    assert (await client.get("/console/keys")).status_code == 303  # still signed out

    assert (await _console_sign_in(client, await tenant.key("admin"))).status_code == 303
    keys_page = await client.get("/console/keys")
    assert keys_page.status_code == 200
    assert 'name="scopes" value="manage"' in keys_page.text
    for path in ("/console/users", "/console/templates", "/console/health"):
        page = await client.get(path)
        assert page.status_code == 403 and "needs scope &#39;read&#39;" in page.text, path
    page = await client.get("/console/notifications")
    assert page.status_code == 403 and "&#39;send&#39; or &#39;read&#39;" in page.text

    # A key made on the key page has the scopes ticked; none ticked is refused.
    csrf = csrf_of(keys_page.text)
    made = await client.post(
        "/console/keys",
        data={"kind": "live", "scopes": ["send", "read"], "scopes_offered": "true"}
        | {"csrf_token": csrf},
    )
    assert made.status_code == 201 and "Scopes: send, read." in made.text
    none = await client.post(
        "/console/keys", data={"kind": "live", "scopes_offered": "true", "csrf_token": csrf}
    )
    assert none.status_code == 422 and "at least one scope" in none.text


async def test_a_test_key_in_the_console_cannot_change_a_template(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    live = await tenant.key()
    assert (await client.post("/v1/templates", json=TEMPLATE, headers=live)).status_code == 201
    assert (await _console_sign_in(client, await tenant.key(test=True))).status_code == 303
    editor = await client.get("/console/templates/welcome")
    assert editor.status_code == 200
    saved = await client.post(
        "/console/templates/welcome",
        data={"channel": "email", "locale": "en", "subject": "x", "body": "<p>pwned</p>"}
        | {"csrf_token": csrf_of(editor.text)},
    )
    assert saved.status_code == 403 and "a test key may read but not change" in saved.text
    versions = (await client.get("/v1/templates/welcome", headers=live)).json()["versions"]
    assert [version["body"] for version in versions] == ["<p>Hi</p>"]


def _scopes_required(route: APIRoute) -> tuple[str, ...] | None:
    pending = list(route.dependant.dependencies)
    while pending:
        dependency = pending.pop()
        scopes = getattr(dependency.call, "scopes", None)
        if scopes is not None:
            return tuple(scopes)
        pending.extend(dependency.dependencies)
    return None


@pytest.mark.fast
def test_every_v1_route_declares_the_scope_it_needs() -> None:
    modules = [
        importlib.import_module(f"api.routes.{found.name}")
        for found in pkgutil.iter_modules(api.routes.__path__)
    ]
    routes = [
        route
        for module in modules
        for route in getattr(getattr(module, "router", None), "routes", ())
        if isinstance(route, APIRoute) and route.path.startswith("/v1/")
    ]
    assert len(routes) > 30  # the audit saw the API
    unscoped = [
        f"{sorted(route.methods)} {route.path}"
        for route in routes
        # A provider's receipts are signed by the provider, never by an API key.
        if "twilio" not in route.path
        and not route.path.startswith("/v1/providers/")
        and _scopes_required(route) is None
    ]
    assert unscoped == []


@pytest.mark.fast
def test_every_console_page_but_sign_in_needs_admin_and_its_scope() -> None:
    from api.console.pages import ROUTERS
    from api.console.session import signed_in

    routes = [route for router in ROUTERS for route in router.routes]
    assert len(routes) > 20  # the audit saw the console
    for route in routes:
        if not isinstance(route, APIRoute) or route.path in ("/", "/sign-in", "/sign-out"):
            continue
        calls = []
        pending = list(route.dependant.dependencies)
        while pending:
            dependency = pending.pop()
            calls.append(dependency.call)
            pending.extend(dependency.dependencies)
        assert signed_in in calls, route.path
        on_keys = route.path.startswith("/keys")
        assert on_keys or _scopes_required(route) is not None, route.path
