"""Escalation when a message is not confirmed: a push with ``confirm_within_seconds`` and
an SMS fallback. Without a receipt in time the SMS goes out and the log says why; with
the client's ``delivered`` receipt in time no SMS is sent and the notification ends
``delivered``; an ``undelivered`` receipt escalates at once."""

from __future__ import annotations

import asyncio

from devtools.sinks import Sinks
from tests.harness import Tenant, events, wait_for_status

CONFIRM = 5


async def _push_with_sms_fallback(tenant: Tenant) -> tuple[dict[str, object], str]:
    user = await tenant.user()
    await tenant.device(str(user["id"]))
    key = await tenant.template("push", "Your code is 1234", "Code")
    await tenant.template("sms", "Your code is 1234", None, key=key)
    nid = await tenant.send(
        "push", str(user["id"]), key, fallback=["sms"], confirm_within_seconds=CONFIRM
    )
    return user, nid


async def _sent_on_push(tenant: Tenant, nid: str) -> None:
    for _ in range(200):
        if any(e["status"] == "sent" for e in await events(tenant.client, nid)):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the push was never sent")


async def test_no_receipt_in_time_sends_the_sms_and_says_why(tenant: Tenant, sinks: Sinks) -> None:
    user, nid = await _push_with_sms_fallback(tenant)

    final = await wait_for_status(tenant.client, nid, {"sent"}, timeout=10)
    await _sent_on_push(tenant, nid)
    for _ in range(300):
        if sinks.state.received("sms", to=str(user["phone"])):
            break
        await asyncio.sleep(0.1)
    final = await wait_for_status(tenant.client, nid, timeout=30)

    assert len(sinks.state.received("sms", to=str(user["phone"]))) == 1
    assert final["status"] == "sent" and final["provider"] == "twilio"
    notes = [e.get("detail") or "" for e in await events(tenant.client, nid)]
    assert any(
        f"cannot reach the user on push (not confirmed delivered within {CONFIRM}s)" in note
        for note in notes
    ), notes


async def test_a_delivered_receipt_in_time_means_no_sms(tenant: Tenant, sinks: Sinks) -> None:
    user, nid = await _push_with_sms_fallback(tenant)
    await _sent_on_push(tenant, nid)

    receipt = await tenant.client.post(
        f"/v1/notifications/{nid}/receipt", json={"status": "delivered"}
    )
    assert receipt.status_code == 202, receipt.text
    final = await wait_for_status(tenant.client, nid, {"delivered"}, timeout=10)
    await asyncio.sleep(CONFIRM + 2)  # past the deadline: still no SMS

    assert final["status"] == "delivered"
    assert sinks.state.received("sms", to=str(user["phone"])) == []
    assert (await wait_for_status(tenant.client, nid, timeout=5))["status"] == "delivered"


async def test_an_undelivered_receipt_escalates_at_once(tenant: Tenant, sinks: Sinks) -> None:
    user, nid = await _push_with_sms_fallback(tenant)
    await _sent_on_push(tenant, nid)

    receipt = await tenant.client.post(
        f"/v1/notifications/{nid}/receipt",
        json={"status": "undelivered", "reason": "app uninstalled"},
    )
    assert receipt.status_code == 202, receipt.text
    # Well before the confirmation deadline.
    for _ in range(int(CONFIRM / 0.1) - 10):
        if sinks.state.received("sms", to=str(user["phone"])):
            break
        await asyncio.sleep(0.1)

    assert len(sinks.state.received("sms", to=str(user["phone"]))) == 1
    notes = [e.get("detail") or "" for e in await events(tenant.client, nid)]
    assert any("undelivered: app uninstalled" in note for note in notes), notes
