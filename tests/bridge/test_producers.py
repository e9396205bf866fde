"""Authenticated producers on the real broker, bridge, Temporal and sinks: a message is
its AMQP user's tenant's, whatever its body says; a user that is not a producer, or a
message without ``user_id``, is dead-lettered; a producer can only publish requests; a
test producer never reaches a provider; a replay keeps the producer's tenant."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.exceptions import AMQPError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.deadletters import replay_dead
from devtools.processes import ManagedProcess
from devtools.sinks import Sinks
from herald import amqp
from herald.contracts import Channel, QueuedNotification
from herald.db import Notification, Producer
from herald.db import Tenant as TenantRow
from herald.producer import NotificationProducer
from herald.producers import NOTHING, WRITE_REQUESTS_ONLY, rabbitmqctl
from herald.settings import Settings
from tests.bridge.support import herald_cli, statuses, vhost, wait_dead, wait_statuses
from tests.harness import Stack, Tenant, new_run_id, new_tenant, producer_settings


@pytest.fixture
async def acme(stack: Stack) -> AsyncIterator[Tenant]:
    """Tenant ``acme-…``, whose producer publishes below."""
    made = await new_tenant(stack, f"acme-{new_run_id()}")
    yield made
    await made.client.aclose()


@pytest.fixture
async def globex(stack: Stack) -> AsyncIterator[Tenant]:
    """Tenant ``globex-…``, whom acme's producer names in its bodies."""
    made = await new_tenant(stack, f"globex-{new_run_id()}")
    yield made
    await made.client.aclose()


def stranger(settings: Settings) -> Settings:
    """``settings`` publishing as a RabbitMQ user allowed to write requests but mapped to
    no tenant (removed with the vhost, like the producers)."""
    user, password = f"{vhost(settings)}.stranger-{new_run_id()}", uuid.uuid4().hex
    rabbitmqctl("add_user", user, stdin=password)
    rabbitmqctl("set_permissions", "-p", vhost(settings), user, NOTHING, ".*", NOTHING)
    return settings.model_copy(
        update={"amqp_url": amqp.url_with_login(settings.amqp_url, user, password)}
    )


def user_permissions(user: str) -> list[str]:
    """``[vhost, configure, write, read]`` of a RabbitMQ user with one vhost."""
    return (
        subprocess.run(
            ["rabbitmqctl", "-q", "list_user_permissions", "--no-table-headers", user],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .split("\t")
    )


async def email_request(owner: Tenant, **fields: object) -> QueuedNotification:
    """An email request to a new user of ``owner`` with a new template (no body tenant)."""
    user = await owner.user()
    template = await owner.template("email", "<p>hi {{ n }}</p>", "Hi {{ n }}")
    values = {"id": uuid.uuid4(), "channel": Channel.email, "user_id": user["id"]}
    return QueuedNotification.model_validate({**values, "template": template, **fields})


async def publish(settings: Settings, request: QueuedNotification) -> None:
    """Publish ``request`` as the user of ``settings``."""
    async with NotificationProducer(settings=settings) as producer:
        await producer.publish(request)


async def tenant_of(engine: AsyncEngine, notification_id: uuid.UUID) -> str | None:
    """The name of the tenant a notification row belongs to, if there is a row."""
    async with engine.connect() as conn:
        return (
            await conn.execute(
                select(TenantRow.name)
                .join(Notification, Notification.tenant_id == TenantRow.id)
                .where(Notification.id == notification_id)
            )
        ).scalar_one_or_none()


async def test_a_producer_sends_for_its_own_tenant_only(
    stack: Stack,
    bridge: ManagedProcess,
    engine: AsyncEngine,
    acme: Tenant,
    globex: Tenant,
    sinks: Sinks,
) -> None:
    settings = stack.settings
    as_acme = await producer_settings(settings, acme.name)
    # A globex user and template with acme's ids, so only the tenant check can refuse it.
    victim = await globex.user()
    template = await globex.template("email", "<p>pwned</p>", "Pwned")
    await acme.user(id=victim["id"])
    await acme.template("email", "<p>acme</p>", "Acme", key=template)
    spoofed = QueuedNotification(
        id=uuid.uuid4(),
        tenant=globex.name,
        channel=Channel.email,
        user_id=victim["id"],
        template=template,
    )
    plain = await email_request(acme, data={"n": 1})

    await publish(as_acme, spoofed)
    await publish(as_acme, plain)

    dead = await wait_dead(settings, {str(spoofed.id)})
    reason = dead[str(spoofed.id)].reason
    assert f"names tenant {globex.name!r}" in reason, reason
    assert f"publishes for tenant {acme.name!r}" in reason, reason
    await wait_statuses(engine, [plain.id], "sent")
    assert await tenant_of(engine, plain.id) == acme.name
    # globex sees nothing: no row, no notification, no email to its user.
    assert await statuses(engine, [spoofed.id]) == {}
    assert (await globex.client.get(f"/v1/notifications/{spoofed.id}")).status_code == 404
    listed = await globex.client.get("/v1/notifications")
    assert listed.status_code == 200 and listed.json()["items"] == [], listed.text
    assert sinks.state.received("email", to=victim["email"]) == []


async def test_messages_from_no_producer_are_dead_lettered_and_stay_so_on_replay(
    stack: Stack, bridge: ManagedProcess, engine: AsyncEngine, acme: Tenant
) -> None:
    settings = stack.settings
    unmapped = await email_request(acme, tenant=acme.name)
    await publish(stranger(settings), unmapped)
    # No user_id at all: aio-pika directly, as a careless client would publish.
    anonymous = await email_request(acme, tenant=acme.name)
    connection = await aio_pika.connect(settings.amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(amqp.REQUESTS_EXCHANGE)
        await exchange.publish(
            aio_pika.Message(anonymous.model_dump_json().encode(), message_id=str(anonymous.id)),
            routing_key="email",
        )

    dead = await wait_dead(settings, {str(unmapped.id), str(anonymous.id)})
    assert "unauthenticated producer: AMQP user" in dead[str(unmapped.id)].reason
    assert "is not mapped to a tenant" in dead[str(unmapped.id)].reason
    assert "unauthenticated producer: the message has no user_id" in (
        dead[str(anonymous.id)].reason
    )
    # Replayed by an operator (guest, a producer of nothing): the body's tenant decides
    # nothing, so both stay dead.
    done = await replay_dead(settings, wanted=str(unmapped.id), queues=[amqp.DEAD])
    assert [(item.result.value, "is not mapped" in item.detail) for item in done] == [
        ("kept", True)
    ]
    done = await replay_dead(settings, wanted=str(anonymous.id), queues=[amqp.DEAD])
    assert [(item.result.value, item.detail) for item in done] == [
        ("kept", "no authenticated producer recorded; left in place")
    ]
    assert await statuses(engine, [unmapped.id, anonymous.id]) == {}
    await wait_dead(settings, {str(unmapped.id), str(anonymous.id)})


async def test_a_producer_cannot_claim_another_user_or_touch_anything_else(
    stack: Stack, bridge: ManagedProcess, acme: Tenant
) -> None:
    settings = stack.settings
    as_acme = await producer_settings(settings, acme.name)
    victim_user = amqp.url_user((await producer_settings(settings, f"{acme.name}-x")).amqp_url)
    attempts = {
        # RabbitMQ checks user_id against the connection's user.
        "claim another producer's user_id": ("publish", victim_user),
        "publish to herald.dead": ("dead", None),
        "declare a queue": ("declare", None),
        "consume a request queue": ("consume", None),
    }
    for what, (action, user_id) in attempts.items():
        connection = await aio_pika.connect(as_acme.amqp_url, timeout=10)
        try:
            channel = await connection.channel(publisher_confirms=True)
            with pytest.raises(AMQPError):
                if action == "publish":
                    exchange = await channel.get_exchange(amqp.REQUESTS_EXCHANGE, ensure=False)
                    message = aio_pika.Message(b"{}", message_id=what, user_id=user_id)
                    await exchange.publish(message, routing_key="email")
                elif action == "dead":
                    exchange = await channel.get_exchange(amqp.DEAD, ensure=False)
                    await exchange.publish(aio_pika.Message(b"{}"), routing_key="")
                elif action == "declare":
                    await channel.declare_queue(f"mine-{new_run_id()}")
                else:
                    queue = await channel.get_queue(amqp.request_queue(Channel.email), ensure=False)
                    await queue.get(timeout=5)
                pytest.fail(f"a producer could {what}")
        finally:
            await connection.close()


async def test_a_test_producer_goes_through_the_lifecycle_without_a_provider(
    stack: Stack, bridge: ManagedProcess, engine: AsyncEngine, acme: Tenant, sinks: Sinks
) -> None:
    as_test = await producer_settings(stack.settings, acme.name, test=True)
    request = await email_request(acme, data={"n": 2})
    await publish(as_test, request)

    await wait_statuses(engine, [request.id], "sent")
    body = (await acme.client.get(f"/v1/notifications/{request.id}")).json()
    async with engine.connect() as conn:
        test = (
            await conn.execute(select(Notification.test).where(Notification.id == request.id))
        ).scalar_one()
    assert test is True, body
    user = (await acme.client.get(f"/v1/users/{request.user_id}")).json()
    assert sinks.state.received("email", to=user["email"]) == []


async def test_a_replay_keeps_the_producers_tenant_whoever_replays_it(
    stack: Stack, bridge: ManagedProcess, engine: AsyncEngine, acme: Tenant
) -> None:
    settings = stack.settings
    user = await acme.user()
    request = QueuedNotification(
        id=uuid.uuid4(),
        channel=Channel.sms,
        user_id=user["id"],
        template=f"later-{new_run_id()}",
    )
    await publish(await producer_settings(settings, acme.name), request)
    dead = await wait_dead(settings, {str(request.id)})
    assert "create it first" in dead[str(request.id)].reason

    await acme.template("sms", "hello", None, key=request.template)
    # Replayed by the operator's user (guest), which is no producer at all.
    replay = herald_cli(settings, "dead", "replay", str(request.id), "--queue", "dead")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "resubmitted" in replay.stdout, replay.stdout
    assert f"herald.dead  {request.id}  started for tenant {acme.name}" in replay.stdout
    await wait_statuses(engine, [request.id], "sent")
    assert await tenant_of(engine, request.id) == acme.name


async def test_producer_add_makes_a_user_that_may_only_publish_requests(
    stack: Stack, bridge: ManagedProcess, engine: AsyncEngine
) -> None:
    settings = stack.settings
    name = f"initech-{new_run_id()}"
    user = f"{vhost(settings)}.{name}-producer"
    added = herald_cli(settings, "producer", "add", "--tenant", name, "--user", user)
    assert added.returncode == 0, added.stderr
    url = added.stdout.strip()
    assert amqp.url_user(url) == user and amqp.url_vhost(url) == vhost(settings)
    assert f"producer {user} publishes for tenant {name}" in added.stderr
    assert "shown only this once" in added.stderr

    permissions = user_permissions(user)
    assert permissions == [
        vhost(settings),
        NOTHING,
        WRITE_REQUESTS_ONLY,
        NOTHING,
    ]
    async with engine.connect() as conn:
        row = (await conn.execute(select(Producer).where(Producer.amqp_user == user))).one()
    assert row.test is False

    again = herald_cli(settings, "producer", "add", "--tenant", name, "--user", user)
    assert again.returncode == 1 and "already exists" in again.stderr, again.stderr
    for bad in ("-rf", "x" * 300):
        refused = herald_cli(settings, "producer", "add", "--tenant", name, "--user", bad)
        assert refused.returncode != 0 and "cannot be an AMQP user name" in refused.stderr
