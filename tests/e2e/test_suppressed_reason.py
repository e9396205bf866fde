"""A suppressed notification says why on its own ``GET``, not only in its events."""

from __future__ import annotations

from tests.harness import Tenant, events, wait_for_status


async def test_a_suppressed_notification_carries_its_reason_in_last_error(tenant: Tenant) -> None:
    user = await tenant.user(preferences={"email": False})
    template = await tenant.template("email", "<p>Hi</p>", subject="Hello")

    nid = await tenant.send("email", user["id"], template)
    final = await wait_for_status(tenant.client, nid)

    assert final["status"] == "suppressed", final
    assert "user opted out of email" in final["last_error"]
    assert [e["detail"] for e in await events(tenant.client, nid)][-1] == final["last_error"]
