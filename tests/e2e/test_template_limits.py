"""A template bomb that only goes off with the send's data passes the save-time check; at
send it fails its notification at once, naming the limit, without a retry, and the
email worker goes on sending."""

from __future__ import annotations

import pytest

from devtools.sinks import Sinks
from tests.harness import Stack, Tenant, events, wait_for_status

SIZE_BOMB = "{% set a = 'x' * 100000 %}" + "{% set a = a + a %}" * 14 + "{{ a|length }}"
TIME_BOMB = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


@pytest.mark.parametrize(
    ("bomb", "reason"),
    [
        pytest.param(SIZE_BOMB, "template output exceeds 1048576 bytes", id="size"),
        pytest.param(TIME_BOMB, "template rendering exceeded 500 ms", id="time"),
    ],
)
async def test_a_bomb_fails_its_send_once_and_the_worker_sends_on(
    stack: Stack, tenant: Tenant, sinks: Sinks, bomb: str, reason: str
) -> None:
    user = await tenant.user()
    # Saved: without ``x`` the bomb does not go off, so the save-time render passes.
    key = await tenant.template("email", f"<p>{{% if x is defined %}}{bomb}{{% endif %}}</p>")

    bombed = await tenant.send("email", user["id"], key, {"x": 1, "name": "Ada"})
    final = await wait_for_status(tenant.client, bombed, timeout=60)
    assert final["status"] == "failed", final
    assert reason in final["last_error"], final
    log = await events(tenant.client, bombed)
    assert [event["status"] for event in log].count("failed") == 1, log
    assert "retrying" not in [event["status"] for event in log], log
    assert {event["attempt"] for event in log} <= {0, 1}, log  # never a second attempt

    # The same worker, right after: a healthy email goes out.
    healthy = await tenant.send("email", user["id"], key, {"name": "Ada"})
    sent = await wait_for_status(tenant.client, healthy, timeout=60)
    assert sent["status"] == "sent", sent
    assert len(sinks.state.received("email", to=user["email"])) == 1
