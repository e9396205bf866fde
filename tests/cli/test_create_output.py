"""Commands that create something print what they made alone on stdout (so a shell can
capture it), their messages on stderr, and with ``--json`` one JSON object."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx

from herald.producers import rabbitmqctl
from herald.settings import Settings
from tests.bridge.support import herald_cli, vhost
from tests.harness import Stack, Tenant, new_run_id


async def _herald(settings: Settings, *args: str) -> tuple[str, str]:
    done = await asyncio.to_thread(herald_cli, settings, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr


async def _works(stack: Stack, key: str) -> None:
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=10) as client:
        answer = await client.get("/v1/users/nobody", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 404, answer.text  # known key, unknown user


async def test_apikey_create_prints_the_key_alone_or_as_json(stack: Stack) -> None:
    tenant = f"cli-out-{new_run_id()}"

    out, _ = await _herald(stack.settings, "apikey", "create", "--tenant", tenant)
    assert out.count("\n") == 1 and " " not in out.strip(), out
    await _works(stack, out.strip())

    out, _ = await _herald(
        stack.settings,
        "apikey",
        "create",
        "--tenant",
        tenant,
        "--test",
        "--scope",
        "read",
        "--json",
    )
    made = json.loads(out)
    assert made["tenant"] == tenant and made["test"] is True and made["scopes"] == ["read"]
    await _works(stack, made["key"])


async def test_broadcast_send_prints_the_id_alone_or_as_json(
    tenant: Tenant, settings: Settings
) -> None:
    user = await tenant.user()
    template = await tenant.template("email", "<p>Hi</p>", "Out")
    args = ("broadcast", "send", "--template", template, "--channel", "email")
    args += ("--user-id", user["id"], "--tenant", tenant.name)

    out, err = await _herald(settings, *args)
    broadcast_id = out.strip()
    assert str(uuid.UUID(broadcast_id)) == broadcast_id, out
    assert f"broadcast {broadcast_id}: 1 recipients" in err
    assert (await tenant.client.get(f"/v1/broadcasts/{broadcast_id}")).status_code == 200

    out, _ = await _herald(settings, *args, "--json")
    made = json.loads(out)
    assert made["total"] == 1 and made["id"] != broadcast_id
    assert (await tenant.client.get(f"/v1/broadcasts/{made['id']}")).json()["id"] == made["id"]


async def test_producer_add_json_holds_the_url(stack: Stack) -> None:
    name = f"cli-out-{new_run_id()}"
    user = f"{vhost(stack.settings)}.{name}-producer"

    out, err = await _herald(
        stack.settings, "producer", "add", "--tenant", name, "--user", user, "--json"
    )
    try:
        made = json.loads(out)
        assert made["amqp_user"] == user and made["tenant"] == name and made["test"] is False
        assert made["amqp_url"].startswith("amqp") and user in made["amqp_url"]
        assert "shown only this once" in err
    finally:
        await asyncio.to_thread(rabbitmqctl, "delete_user", user)
