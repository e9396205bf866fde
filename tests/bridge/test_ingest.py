"""Queued requests through the real bridge, Temporal, workers and sinks: every message
started once, invalid ones dead-lettered with their reason, failures published and
replayable, unroutable publishes refused."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.deadletters import replay_dead
from devtools.processes import ManagedProcess
from devtools.sinks import Rule, Sinks
from herald import amqp
from herald.contracts import Channel, QueuedNotification
from herald.producer import NotificationProducer
from tests.bridge.support import (
    herald_cli,
    requests,
    wait_dead,
    wait_statuses,
    wait_workflow_runs,
)
from tests.harness import Stack, Tenant, new_run_id, producer_settings, rabbitmq_vhost


async def channel_templates(tenant: Tenant) -> dict[Channel, str]:
    """One template per channel."""
    return {
        Channel.email: await tenant.template("email", "<p>n={{ n }}</p>", "Message {{ n }}"),
        Channel.sms: await tenant.template("sms", "n={{ n }}", None),
        Channel.push: await tenant.template("push", "n={{ n }}", "Message {{ n }}"),
    }


async def test_a_thousand_messages_with_duplicates_start_a_thousand_workflows_once_each(
    stack: Stack, bridge: ManagedProcess, engine: AsyncEngine, tenant: Tenant, sinks: Sinks
) -> None:
    settings = stack.settings
    user = await tenant.user()
    token = await tenant.device(user["id"])
    batch = requests(tenant.name, user["id"], await channel_templates(tenant), 1000)
    # Every 10th request is published twice, back to back, as a producer retry would.
    published = [
        copy for i, item in enumerate(batch) for copy in [item] * (2 if i % 10 == 0 else 1)
    ]
    assert len(published) == 1100

    as_producer = await producer_settings(settings, tenant.name)
    async with NotificationProducer(settings=as_producer) as producer:
        assert await producer.publish_many(published) == 1100

    ids = [item.id for item in batch]
    await wait_statuses(engine, ids, "sent", timeout=280)
    runs = await wait_workflow_runs(settings, ids)
    assert len(runs) == 1000 and set(runs.values()) == {1}, runs.most_common(3)
    delivered = {
        "email": sinks.state.received("email", to=user["email"]),
        "sms": sinks.state.received("sms", to=user["phone"]),
        "push": sinks.state.received("push", to=token),
    }
    expected = {kind: sum(item.channel.value == kind for item in batch) for kind in delivered}
    assert {kind: len(got) for kind, got in delivered.items()} == expected
    keys = {m.idempotency_key for got in delivered.values() for m in got}
    assert len(keys) == 1000  # one delivery per notification, none repeated
    assert bridge.alive


async def test_poison_messages_are_dead_lettered_with_a_reason_and_the_rest_flow(
    stack: Stack, bridge: ManagedProcess, engine: AsyncEngine, tenant: Tenant
) -> None:
    settings = stack.settings
    user = await tenant.user()
    sms = await tenant.template("sms", "n={{ n }}", None)
    good = requests(tenant.name, user["id"], {Channel.sms: sms}, 30)

    def body(**changes: object) -> bytes:
        fields = good[0].model_dump(mode="json") | {"id": str(uuid.uuid4())} | changes
        return json.dumps({k: v for k, v in fields.items() if v is not None}).encode()

    run = new_run_id()
    poison = {
        f"not-json-{run}": (b"{this is not json", "invalid message: body: Invalid JSON"),
        f"missing-field-{run}": (body(user_id=None), "user_id: Field required"),
        f"unknown-channel-{run}": (body(channel="fax"), "channel: Input should be 'email'"),
        f"too-big-{run}": (
            body(data={"blob": "x" * (5 * 1024 * 1024)}),
            "bytes; the limit is 65536",
        ),
        f"other-tenant-{run}": (
            body(tenant=f"nobody-{run}"),
            f"the message names tenant 'nobody-{run}', but its producer publishes for tenant",
        ),
        f"unknown-template-{run}": (body(template="no-such"), "no sms template 'no-such'"),
        f"wrong-queue-{run}": (body(channel="email"), "does not match queue herald.sms"),
    }
    async with amqp.Publisher(await producer_settings(settings, tenant.name)) as publisher:
        for i, (message_id, (raw, _)) in enumerate(poison.items()):
            for item in good[i * 4 : i * 4 + 4]:  # valid messages on either side
                exchange, key, payload = amqp.REQUESTS_EXCHANGE, "sms", item.model_dump_json()
                await publisher.publish(
                    exchange, key, amqp.json_message(payload.encode(), message_id=str(item.id))
                )
            await publisher.publish(
                amqp.REQUESTS_EXCHANGE, "sms", amqp.json_message(raw, message_id=message_id)
            )
        for item in good[28:]:
            await publisher.publish(
                amqp.REQUESTS_EXCHANGE,
                "sms",
                amqp.json_message(item.model_dump_json().encode(), message_id=str(item.id)),
            )

    await wait_statuses(engine, [item.id for item in good], "sent")
    dead = await wait_dead(settings, set(poison))
    for message_id, (_, reason) in poison.items():
        assert reason in dead[message_id].reason, (message_id, dead[message_id].reason)
        assert dead[message_id].queue == amqp.DEAD
    listing = herald_cli(settings, "dead", "list", "--queue", "dead")
    assert listing.returncode == 0, listing.stderr
    assert "names tenant" in listing.stdout
    assert bridge.alive


async def test_a_dead_lettered_request_is_replayed_once_its_cause_is_fixed(
    stack: Stack, bridge: ManagedProcess, engine: AsyncEngine, tenant: Tenant
) -> None:
    settings = stack.settings
    user = await tenant.user()
    request = QueuedNotification(
        id=uuid.uuid4(),
        tenant=tenant.name,
        channel=Channel.sms,
        user_id=user["id"],
        template=f"later-{new_run_id()}",
        data={"n": 1},
    )
    async with NotificationProducer(
        settings=await producer_settings(settings, tenant.name)
    ) as producer:
        await producer.publish(request)
    dead = await wait_dead(settings, {str(request.id)})
    assert "create it first" in dead[str(request.id)].reason

    await tenant.template("sms", "n={{ n }}", None, key=request.template)
    (replayed,) = await replay_dead(settings, wanted=str(request.id))
    assert replayed.result.value == "resubmitted"
    assert replayed.detail == f"started for tenant {tenant.name}"

    await wait_statuses(engine, [request.id], "sent")
    assert await replay_dead(settings, wanted=str(request.id)) == []  # gone from herald.dead


async def test_a_notification_that_fails_for_good_is_published_and_resent_by_replay(
    stack: Stack, bridge: ManagedProcess, engine: AsyncEngine, tenant: Tenant, sinks: Sinks
) -> None:
    settings = stack.settings
    user = await tenant.user()
    sinks.state.add_rule(Rule(match=user["phone"], always=503))
    (request,) = requests(
        tenant.name, user["id"], {Channel.sms: await tenant.template("sms", "n={{ n }}", None)}, 1
    )
    async with NotificationProducer(
        settings=await producer_settings(settings, tenant.name)
    ) as producer:
        await producer.publish(request)

    await wait_statuses(engine, [request.id], "failed", timeout=60)
    failed = await wait_dead(settings, {str(request.id)}, queue=amqp.FAILED)
    assert "503" in failed[str(request.id)].reason
    assert failed[str(request.id)].message_id == f"{request.id}:1"

    sinks.state.rules.clear()  # the provider recovers
    replay = herald_cli(settings, "dead", "replay", str(request.id), "--queue", "failed")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "resent" in replay.stdout

    await wait_statuses(engine, [request.id], "sent", timeout=60)
    assert len(sinks.state.received("sms", to=user["phone"])) == 1
    again = herald_cli(settings, "dead", "replay", str(request.id), "--queue", "failed")
    assert again.returncode == 1 and "nothing to replay" in again.stdout


async def test_a_replayed_failed_notification_keeps_its_fallback(
    stack: Stack, bridge: ManagedProcess, engine: AsyncEngine, tenant: Tenant, sinks: Sinks
) -> None:
    settings = stack.settings
    user = await tenant.user()
    key = f"fallback-{new_run_id()}"
    await tenant.template("sms", "n={{ n }}", None, key=key)
    await tenant.template("email", "<p>n={{ n }}</p>", "Message {{ n }}", key=key)
    # Both refusals are final and the recipient's, so no circuit breaker opens.
    sinks.state.add_rule(Rule(match=user["phone"], always=400))
    mailbox_full = sinks.state.add_rule(Rule(match=user["email"], always="552 5.2.2 full"))
    request = QueuedNotification(
        id=uuid.uuid4(),
        tenant=tenant.name,
        channel=Channel.sms,
        fallback=[Channel.email],
        user_id=user["id"],
        template=key,
        data={"n": 1},
    )
    async with NotificationProducer(
        settings=await producer_settings(settings, tenant.name)
    ) as producer:
        await producer.publish(request)
    await wait_statuses(engine, [request.id], "failed", timeout=60)
    await wait_dead(settings, {str(request.id)}, queue=amqp.FAILED)

    sinks.state.rules.remove(mailbox_full)  # email recovers; SMS is still down
    replay = herald_cli(settings, "dead", "replay", str(request.id), "--queue", "failed")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "resent" in replay.stdout

    # The resent cycle is refused on SMS again and falls back to email, as first asked.
    await wait_statuses(engine, [request.id], "sent", timeout=60)
    (mail,) = sinks.state.received("email", to=user["email"])
    assert "n=1" in mail.body
    assert sinks.state.received("sms", to=user["phone"]) == []


async def test_unroutable_publishes_are_errors(stack: Stack) -> None:
    async with amqp.Publisher(stack.settings) as publisher:
        with pytest.raises(amqp.Unroutable, match="no queue bound"):
            await publisher.publish(
                amqp.REQUESTS_EXCHANGE, "fax", amqp.json_message(b"{}", message_id="fax-1")
            )

    bare = f"herald-test-bare-{new_run_id()}"
    rabbitmq_vhost(bare, create=True)
    try:
        settings = stack.settings.model_copy(
            update={"amqp_url": f"amqp://guest:guest@127.0.0.1:5672/{bare}"}
        )
        result = herald_cli(
            settings, "publish", "--channel", "sms", "--user-id", "u1", "--template", "t1"
        )
        assert result.returncode == 1
        assert "not published" in result.stderr and "herald rabbitmq setup" in result.stderr
        setup = herald_cli(settings, "rabbitmq", "setup")
        assert setup.returncode == 0, setup.stderr
        published = herald_cli(
            settings,
            "publish",
            "--channel",
            "sms",
            "--user-id",
            "u1",
            "--template",
            "t1",
            "--count",
            "3",
        )
        assert published.returncode == 0, published.stderr
        assert "published 3 sms requests" in published.stdout
    finally:
        rabbitmq_vhost(bare, create=False)
