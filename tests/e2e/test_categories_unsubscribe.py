"""Template categories, per-category preferences and one-click unsubscribe (RFC 8058)
through the real API, workers and SMTP sink."""

from __future__ import annotations

import re
from typing import Any

import httpx

from devtools.sinks import Sinks
from tests.harness import Stack, Tenant, events, wait_for_status

URL = re.compile(r"<(https?://[^>]+/u/([^>]+))>")


async def _template(tenant: Tenant, category: str | None, body: str = "<p>News</p>") -> str:
    key = f"t-{category or 'default'}-{id(body)}"
    fields: dict[str, Any] = {
        "key": key,
        "channel": "email",
        "subject": "Hello",
        "body": body,
    }
    if category is not None:
        fields["category"] = category
    response = await tenant.client.post("/v1/templates", json=fields)
    assert response.status_code == 201, response.text
    assert response.json()["category"] == (category or "transactional")
    return key


async def _sent_mail(tenant: Tenant, sinks: Sinks, user: dict[str, Any], key: str) -> Any:
    nid = await tenant.send("email", user["id"], key)
    final = await wait_for_status(tenant.client, nid)
    assert final["status"] == "sent", final
    (mail,) = [m for m in sinks.state.received("email", to=user["email"]) if nid in m.message_id]
    return mail


async def test_a_marketing_email_carries_a_working_one_click_unsubscribe(
    tenant: Tenant, sinks: Sinks, stack: Stack
) -> None:
    user = await tenant.user()
    marketing = await _template(
        tenant, "marketing", '<p>Sale!</p><a href="{{ unsubscribe_url }}">unsubscribe</a>'
    )
    receipts = await _template(tenant, None)

    mail = await _sent_mail(tenant, sinks, user, marketing)
    header = str(mail.raw["List-Unsubscribe"])
    assert mail.raw["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    found = URL.search(header)
    assert found, header
    url, token = found.groups()
    assert url.startswith(stack.api_url + "/u/")
    assert "<mailto:" in header and token in header.split("mailto:")[1].replace("%20", " ")
    assert url in mail.body  # {{ unsubscribe_url }}

    transactional = await _sent_mail(tenant, sinks, user, receipts)
    assert transactional.raw["List-Unsubscribe"] is None
    assert transactional.raw["List-Unsubscribe-Post"] is None

    async with httpx.AsyncClient(timeout=10) as anonymous:  # no API key
        page = await anonymous.get(url)
        assert page.status_code == 200
        assert '<form method="post"' in page.text and "marketing" in page.text
        # Showing the page changes nothing.
        still = await _sent_mail(tenant, sinks, user, marketing)
        assert still.raw["List-Unsubscribe"] is not None

        tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
        assert (await anonymous.post(url.replace(token, tampered))).status_code == 404
        assert (await anonymous.post(url[:-3] + "xyz")).status_code == 404

        one_click = await anonymous.post(url, data={"List-Unsubscribe": "One-Click"})
        assert one_click.status_code == 200, one_click.text
        again = await anonymous.post(url, data={"List-Unsubscribe": "One-Click"})
        assert again.status_code == 200  # idempotent

    prefs = (await tenant.client.get(f"/v1/users/{user['id']}")).json()["preferences"]
    assert prefs["categories"] == {"marketing": {"email": False}}
    assert prefs["email"] is True

    nid = await tenant.send("email", user["id"], marketing)
    final = await wait_for_status(tenant.client, nid)
    assert final["status"] == "suppressed"
    reason = "user opted out of marketing on email (preferences.categories.marketing.email)"
    assert [e["detail"] for e in await events(tenant.client, nid)][-1] == reason
    # Transactional email still goes.
    await _sent_mail(tenant, sinks, user, receipts)


async def test_a_token_of_another_tenants_user_changes_nothing(
    tenant: Tenant, other_tenant: Tenant, sinks: Sinks
) -> None:
    user = await tenant.user()
    marketing = await _template(tenant, "marketing")
    mail = await _sent_mail(tenant, sinks, user, marketing)
    found = URL.search(str(mail.raw["List-Unsubscribe"]))
    assert found
    url = found.group(1)
    # The same user id in another tenant is another user: the token is not theirs.
    await other_tenant.user(id=user["id"], email="other-" + user["email"])

    async with httpx.AsyncClient(timeout=10) as anonymous:
        assert (await anonymous.post(url)).status_code == 200

    other = (await other_tenant.client.get(f"/v1/users/{user['id']}")).json()
    assert "categories" not in other["preferences"]


async def test_preferences_opt_out_per_category_and_channel(tenant: Tenant, sinks: Sinks) -> None:
    user = await tenant.user(preferences={"categories": {"marketing": {"email": False}}})
    marketing = await _template(tenant, "marketing")
    updates = await _template(tenant, "product-updates")

    stopped = await tenant.send("email", user["id"], marketing)
    assert (await wait_for_status(tenant.client, stopped))["status"] == "suppressed"
    await _sent_mail(tenant, sinks, user, updates)

    bad = await tenant.client.put(
        f"/v1/users/{user['id']}",
        json={
            "email": user["email"],
            "preferences": {"categories": {"transactional": {"email": False}}},
        },
    )
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"][:3] == ["body", "preferences", "categories"]


async def test_quiet_hours_and_timezone_are_validated_and_stored(tenant: Tenant) -> None:
    user = await tenant.user(
        timezone="America/New_York", quiet_hours={"start": "22:00", "end": "08:00"}
    )
    assert user["quiet_hours"] == {"start": "22:00", "end": "08:00"}

    for fields, loc in (
        ({"timezone": "Mars/Olympus"}, ["body", "timezone"]),
        ({"quiet_hours": {"start": "25:00", "end": "08:00"}}, ["body", "quiet_hours", "start"]),
    ):
        answer = await tenant.client.post("/v1/users", json={"id": "q-bad", **fields})
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"][0]["loc"] == loc
