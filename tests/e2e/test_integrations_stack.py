"""Per-tenant integrations on the real stack: tenant A sends through its SendGrid account
then its own SMTP relay, tenant B through Mailgun, a tenant without integrations through
the environment's SMTP. SendGrid's outage fails A over to its SMTP relay once the breaker
of A's SendGrid integration opens, with B unaffected; SendGrid refusing one address fails
that notification alone. The credentials are nowhere in the Temporal history or the logs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.devserver import TemporalDevServer
from devtools.sinks import Rule, Sinks
from herald.contracts import workflow_id_for
from herald.ports import free_port
from tests.e2e.test_payload_codec import readable, show
from tests.harness import Stack, Tenant, wait_for_status

# The workers read integrations again after this (HERALD_INTEGRATIONS_CACHE_SECONDS).
SETTLE = 3.5


@pytest.fixture(scope="module")
def relay() -> Iterator[Sinks]:
    """Tenant A's own SMTP relay (not the environment's)."""
    running = Sinks(smtp_port=free_port(), http_port=free_port()).start()
    yield running
    running.stop()


def _log_bytes(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


async def _integrate(tenant: Tenant, **body: Any) -> dict[str, Any]:
    made = await tenant.client.post("/v1/integrations", json=body)
    assert made.status_code == 201, made.text
    return dict(made.json())


async def _email(tenant: Tenant, address: str) -> str:
    user = await tenant.user(email=address)
    template = await tenant.template("email", "<p>Hello from {{ who }}</p>", subject="Hi")
    return await tenant.send("email", user["id"], template, {"who": tenant.name})


async def test_tenants_send_through_their_own_providers_and_fail_over(
    tenant: Tenant,
    other_tenant: Tenant,
    stack: Stack,
    sinks: Sinks,
    relay: Sinks,
    temporal_server: TemporalDevServer,
) -> None:
    apis = sinks.email_apis
    creds = apis.credentials
    a, b = tenant, other_tenant
    await _integrate(
        a,
        channel="email",
        provider="sendgrid",
        name="a-sendgrid",
        priority=0,
        config=creds.config("sendgrid", sinks.http_url) | {"from": "A <a@example.org>"},
    )
    await _integrate(
        a,
        channel="email",
        provider="smtp",
        name="a-smtp",
        priority=1,
        config={"host": "127.0.0.1", "port": str(relay.smtp_port), "from": "A <a@example.org>"},
    )
    await _integrate(
        b,
        channel="email",
        provider="mailgun",
        name="b-mailgun",
        config=creds.config("mailgun", sinks.http_url) | {"from": "B <b@mg.herald.test>"},
    )
    listed = (await a.client.get("/v1/integrations")).text
    assert creds.sendgrid_api_key not in listed
    await asyncio.sleep(SETTLE)

    # A through SendGrid, B through Mailgun.
    first_a = await _email(a, "ada@example.org")
    first_b = await _email(b, "bea@example.org")
    assert (await wait_for_status(a.client, first_a))["provider"] == "a-sendgrid"
    assert (await wait_for_status(b.client, first_b))["provider"] == "b-mailgun"
    by_provider = {m.raw["provider"]: m.to for m in sinks.state.received("email") if m.raw}
    assert by_provider.get("sendgrid") == "ada@example.org"
    assert by_provider.get("mailgun") == "bea@example.org"
    assert relay.state.received("email") == []

    # SendGrid refuses one address: that notification fails, A's next one goes out.
    sinks.state.add_rule(Rule(match="refused-", always=400))
    refused = await _email(a, "refused-one@example.org")
    fine = await _email(a, "fine@example.org")
    refused_status = await wait_for_status(a.client, refused)
    assert refused_status["status"] == "failed", refused_status
    assert "valid address" in (refused_status.get("last_error") or str(refused_status))
    assert (await wait_for_status(a.client, fine))["provider"] == "a-sendgrid"
    sinks.state.rules.clear()

    # SendGrid down: A's sends fail over to A's SMTP relay once the breaker of its
    # SendGrid integration opens; B's go on through Mailgun meanwhile.
    apis.fail("sendgrid", 503)
    try:
        during_a = [await _email(a, f"outage-{i}@example.org") for i in range(4)]
        during_b = [await _email(b, f"b-outage-{i}@example.org") for i in range(3)]
        for nid in during_b:
            assert (await wait_for_status(b.client, nid))["provider"] == "b-mailgun"
        outcomes = [await wait_for_status(a.client, nid, timeout=90) for nid in during_a]
        assert any(o["provider"] == "a-smtp" for o in outcomes), outcomes
        # With the breaker open, the next send goes to the relay at once.
        after = await _email(a, "after@example.org")
        status = await wait_for_status(a.client, after)
        assert (status["status"], status["provider"]) == ("sent", "a-smtp"), status
        assert "after@example.org" in {m.to for m in relay.state.received("email")}
    finally:
        apis.recover("sendgrid")

    # The credentials are in no Temporal history (decoded through the codec endpoint)
    # and no process's log.
    secrets = [creds.sendgrid_api_key, creds.mailgun_api_key]
    for nid in (first_a, first_b, after):
        history = readable(
            show(
                temporal_server,
                workflow_id_for(nid),
                "--codec-endpoint",
                f"{stack.api_url}/codec",
            )
        )
        assert '"who"' in history  # decoded: the input's data is readable here
        for secret in secrets:
            assert secret not in history
    for process in stack.processes.values():
        content = _log_bytes(Path(process.log_path))
        for secret in secrets:
            assert secret.encode() not in content, process.log_path


async def test_a_tenant_without_integrations_uses_the_environments_providers(
    tenant: Tenant, sinks: Sinks
) -> None:
    nid = await _email(tenant, "plain@example.org")
    status = await wait_for_status(tenant.client, nid)
    assert (status["status"], status["provider"]) == ("sent", "smtp")
    assert "plain@example.org" in {m.to for m in sinks.state.received("email")}
