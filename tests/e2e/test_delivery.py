"""A notification per channel goes through the real API, workers, Temporal and sinks."""

from __future__ import annotations

from devtools.sinks import Sinks
from tests.harness import Tenant, events, wait_for_status


async def test_each_channel_reaches_its_provider_and_logs_every_transition(
    tenant: Tenant, sinks: Sinks
) -> None:
    user = await tenant.user(locale="en")
    token = await tenant.device(user["id"])
    templates = {
        "email": await tenant.template(
            "email", "<p>Hi {{ name }}, your code is {{ code }}</p>", "Code for {{ name }}"
        ),
        "sms": await tenant.template("sms", "Hi {{ name }}, code {{ code }}", None),
        "push": await tenant.template("push", "Code {{ code }}", "For {{ name }}"),
    }
    data = {"name": "Ada <Lovelace>", "code": "4711"}
    ids = {ch: await tenant.send(ch, user["id"], key, data) for ch, key in templates.items()}

    for channel, notification_id in ids.items():
        final = await wait_for_status(tenant.client, notification_id)
        assert final["status"] == "sent", final
        assert final["attempts"] == 1
        assert final["template_version"] == 1
        assert final["provider_message_id"]
        log = await events(tenant.client, notification_id)
        assert [e["status"] for e in log] == ["accepted", "sending", "sent"], (channel, log)

    (mail,) = sinks.state.received("email", to=user["email"])
    assert mail.subject == "Code for Ada <Lovelace>"
    assert "Hi Ada &lt;Lovelace&gt;, your code is 4711" in mail.body  # HTML autoescaped
    assert mail.message_id == f"<{ids['email']}@localhost>"

    (sms,) = sinks.state.received("sms", to=user["phone"])
    assert sms.body == "Hi Ada <Lovelace>, code 4711"
    assert sms.idempotency_key == ids["sms"]

    (push,) = sinks.state.received("push", to=token)
    assert (push.subject, push.body) == ("For Ada <Lovelace>", "Code 4711")
    assert push.idempotency_key == ids["push"]


async def test_the_users_language_and_its_newest_version_are_rendered(
    tenant: Tenant, sinks: Sinks
) -> None:
    user = await tenant.user(locale="de-AT")
    key = await tenant.template("email", "<p>Hello {{ name }}</p>", "Hello")
    await tenant.template("email", "<p>Hallo {{ name }}</p>", "Hallo", key=key, locale="de")
    newest = await tenant.client.put(
        f"/v1/templates/{key}",
        json={
            "key": key,
            "channel": "email",
            "locale": "de",
            "subject": "Servus",
            "body": "<p>Servus {{ name }}</p>",
        },
    )
    assert newest.status_code == 200, newest.text

    nid = await tenant.send("email", user["id"], key, {"name": "Ada"})

    final = await wait_for_status(tenant.client, nid)
    assert final["status"] == "sent", final
    assert final["template_version"] == newest.json()["version"]
    (mail,) = sinks.state.received("email", to=user["email"])
    # de-AT has no template of its own: its language, German, in its newest version.
    assert mail.subject == "Servus"
    assert "Servus Ada" in mail.body
