"""Digests through the real API, core worker, Temporal and SMTP sink: a burst becomes one
email listing every request in order, even with the core worker SIGKILLed twice while
the window is open; keys never mix; a request after the window closed opens the next
digest; each request's own id shows the digest and then the digest's status."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import timedelta
from typing import Any

from cli.stuck import find_stuck
from devtools.sinks import Received, Sinks
from herald import search
from herald.settings import Settings
from herald.temporal import connect
from tests.harness import Stack, Tenant, events, wait_for_status

ITEM = re.compile(r"<li>([^<]+)</li>")
BODY = "<ul>{% for item in items %}<li>{{ item.key }}-{{ item.n }}</li>{% endfor %}</ul>"


async def _digest_template(tenant: Tenant) -> str:
    return await tenant.template("email", BODY, "{{ count }} updates")


async def _send(
    tenant: Tenant, user_id: str, template: str, key: str, n: int, window: int, **extra: Any
) -> str:
    return await tenant.send(
        "email",
        user_id,
        template,
        {"key": key, "n": n},
        digest={"key": key, "window_seconds": window, **extra},
    )


async def _emails(sinks: Sinks, address: str, count: int, timeout: float = 60) -> list[Received]:
    """Wait for ``count`` emails to ``address``, then a little longer to catch any extra."""
    deadline = time.monotonic() + timeout
    while len(sinks.state.received("email", to=address)) < count:
        assert time.monotonic() < deadline, (
            f"{len(sinks.state.received('email', to=address))} emails arrived, wanted {count}"
        )
        await asyncio.sleep(0.2)
    await asyncio.sleep(2)
    return sinks.state.received("email", to=address)


def _items(mail: Received) -> list[str]:
    return ITEM.findall(mail.body)


async def _wait_for_digest_id(tenant: Tenant, nid: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = (await tenant.client.get(f"/v1/notifications/{nid}")).json()
        if body.get("digest_id"):
            return body
        assert time.monotonic() < deadline, f"{nid} never joined a digest: {body}"
        await asyncio.sleep(0.2)


async def test_fifty_requests_in_one_window_become_one_email_listing_all_in_order(
    tenant: Tenant, sinks: Sinks
) -> None:
    user = await tenant.user()
    template = await _digest_template(tenant)

    ids = [await _send(tenant, user["id"], template, "comments", n, window=10) for n in range(50)]

    assert len(set(ids)) == 50  # every request its own id and 202
    first = await _wait_for_digest_id(tenant, ids[0])
    assert first["status"] == "scheduled"
    (mail,) = await _emails(sinks, user["email"], 1)
    assert mail.subject == "50 updates"
    assert _items(mail) == [f"comments-{n}" for n in range(50)]

    # Each request now shows the digest's notification and its status.
    last = await wait_for_status(tenant.client, ids[-1], {"sent"})
    assert last["digest_id"] == first["digest_id"]
    digest_nid = last["digest_notification_id"]
    assert mail.message_id == f"<{digest_nid}@localhost>"
    sent = await wait_for_status(tenant.client, digest_nid, {"sent"})
    assert sent["template"] == template
    log = [(e["status"], e["detail"] or "") for e in await events(tenant.client, ids[7])]
    assert log[0][0] == "accepted"
    assert log[1][0] == "scheduled" and first["digest_id"] in log[1][1]
    assert any(f"sent as notification {digest_nid}" in detail for _, detail in log)


async def test_a_core_worker_sigkilled_twice_in_the_window_still_sends_one_email_with_all(
    tenant: Tenant, sinks: Sinks, stack: Stack
) -> None:
    user = await tenant.user()
    template = await _digest_template(tenant)
    core = stack.processes["worker-core"]

    ids = [await _send(tenant, user["id"], template, "k", n, window=10) for n in range(20)]
    core.kill()
    core.start()
    ids += [await _send(tenant, user["id"], template, "k", n, window=10) for n in range(20, 35)]
    await asyncio.to_thread(stack.wait_ready, "worker-core")
    core.kill()
    core.start()
    ids += [await _send(tenant, user["id"], template, "k", n, window=10) for n in range(35, 50)]
    await asyncio.to_thread(stack.wait_ready, "worker-core")

    (mail,) = await _emails(sinks, user["email"], 1, timeout=90)
    assert _items(mail) == [f"k-{n}" for n in range(50)]
    for nid in ids[::10]:
        assert (await wait_for_status(tenant.client, nid, {"sent"}))["status"] == "sent"


async def test_three_keys_interleaved_become_three_emails_that_never_mix(
    tenant: Tenant, sinks: Sinks
) -> None:
    user = await tenant.user()
    template = await _digest_template(tenant)
    keys = ["alpha", "beta", "gamma"]

    for n in range(30):
        await _send(tenant, user["id"], template, keys[n % 3], n, window=5)

    mails = await _emails(sinks, user["email"], 3)
    assert len(mails) == 3
    by_key = {_items(mail)[0].split("-")[0]: _items(mail) for mail in mails}
    assert by_key == {key: [f"{key}-{n}" for n in range(30) if keys[n % 3] == key] for key in keys}


async def test_a_request_a_second_after_the_window_closed_opens_the_next_digest(
    tenant: Tenant, sinks: Sinks
) -> None:
    user = await tenant.user()
    template = await _digest_template(tenant)

    started = time.monotonic()
    early = await _send(tenant, user["id"], template, "k", 1, window=3)
    await asyncio.sleep(max(0.0, started + 3 + 1 - time.monotonic()))
    late = await _send(tenant, user["id"], template, "k", 2, window=3)

    mails = await _emails(sinks, user["email"], 2)
    assert len(mails) == 2
    assert sorted(_items(mail) for mail in mails) == [["k-1"], ["k-2"]]
    first = await wait_for_status(tenant.client, early, {"sent"})
    second = await wait_for_status(tenant.client, late, {"sent"})
    assert first["digest_id"] != second["digest_id"]


async def test_max_items_closes_the_digest_early_and_urgent_skips_it(
    tenant: Tenant, sinks: Sinks
) -> None:
    user = await tenant.user()
    template = await _digest_template(tenant)

    for n in range(5):
        await _send(tenant, user["id"], template, "k", n, window=3600, max_items=5)
    urgent = await tenant.send(
        "email",
        user["id"],
        template,
        {"items": [{"key": "now", "n": 0}], "count": 1},
        digest={"key": "k", "window_seconds": 3600},
        priority="urgent",
    )

    final = await wait_for_status(tenant.client, urgent, {"sent"})
    assert final["digest_id"] is None
    mails = await _emails(sinks, user["email"], 2)
    assert sorted(_items(mail) for mail in mails) == [
        ["k-0", "k-1", "k-2", "k-3", "k-4"],
        ["now-0"],
    ]


async def test_a_replayed_idempotency_key_is_one_item(tenant: Tenant, sinks: Sinks) -> None:
    user = await tenant.user()
    template = await _digest_template(tenant)
    body = {
        "channel": "email",
        "user_id": user["id"],
        "template": template,
        "data": {"key": "k", "n": 1},
        "digest": {"key": "k", "window_seconds": 3},
    }

    answers = [
        await tenant.client.post("/v1/notifications", json=body, headers={"Idempotency-Key": "x"})
        for _ in range(3)
    ]

    assert [answer.status_code for answer in answers] == [202, 200, 200]
    (mail,) = await _emails(sinks, user["email"], 1)
    assert _items(mail) == ["k-1"]


async def test_a_digest_cannot_be_combined_with_send_at_or_fallback(tenant: Tenant) -> None:
    user = await tenant.user()
    template = await _digest_template(tenant)
    for extra in ({"send_at": "2099-01-01T00:00:00Z"}, {"fallback": ["sms"]}):
        answer = await tenant.client.post(
            "/v1/notifications",
            json={
                "channel": "email",
                "user_id": user["id"],
                "template": template,
                "digest": {"key": "k", "window_seconds": 3},
                **extra,
            },
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"][0]["loc"] == ["body", "digest"]


async def test_an_open_digest_is_scheduled_in_temporal_and_not_stuck(
    tenant: Tenant, settings: Settings
) -> None:
    user = await tenant.user()
    template = await _digest_template(tenant)
    nid = await _send(tenant, user["id"], template, "ui", 1, window=3600)
    digest_id = (await _wait_for_digest_id(tenant, nid))["digest_id"]
    client = await connect(settings)

    query = f'HeraldRecipient="{user["id"]}" AND ExecutionStatus="Running"'
    deadline = time.monotonic() + 30
    while not (found := [run async for run in client.list_workflows(query)]):
        assert time.monotonic() < deadline, "the digest is not listed"
        await asyncio.sleep(0.5)
    (execution,) = found
    assert execution.id.startswith("digest-")
    assert execution.typed_search_attributes.get(search.STATUS) == "scheduled"
    described = await client.get_workflow_handle(execution.id).describe()
    assert "digest ui" in (await described.static_summary() or "")
    state = await client.get_workflow_handle(execution.id).query("status")
    assert (state["digest_id"], state["members"]) == (digest_id, 1)

    stuck = await find_stuck(client, settings, timedelta(0))
    assert execution.id not in {row.workflow_id for row in stuck}


async def test_forty_requests_of_sixty_kilobytes_each_become_one_email_counting_forty(
    tenant: Tenant, sinks: Sinks
) -> None:
    # 40 x 60 KB is more than Temporal's 2 MB payload limit: only ids may travel there.
    user = await tenant.user()
    template = await tenant.template(
        "email",
        "<ul>{% for item in items %}<li>{{ item.n }}:{{ item.blob | length }}</li>"
        "{% endfor %}</ul>",
        "{{ count }} updates",
    )
    blob = "x" * 60_000
    ids = [
        await tenant.send(
            "email",
            user["id"],
            template,
            {"n": n, "blob": blob},
            digest={"key": "big", "window_seconds": 5},
        )
        for n in range(40)
    ]

    (mail,) = await _emails(sinks, user["email"], 1, timeout=120)
    assert mail.subject == "40 updates"
    assert _items(mail) == [f"{n}:60000" for n in range(40)]
    for nid in ids:
        assert (await wait_for_status(tenant.client, nid, ["sent"]))["status"] == "sent"
