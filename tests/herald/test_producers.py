"""Producer identities without a broker: AMQP URLs, user names, which user a dead message
holds the producer of, and the producer cache."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from aio_pika.abc import AbstractIncomingMessage
from sqlalchemy.ext.asyncio import AsyncEngine

from bridge.deadletters import producer_of
from herald import amqp, producers
from herald.producers import ProducerCache, ProducerError, map_producer, valid_user
from herald.tenants import TenantContext

pytestmark = pytest.mark.fast


def test_the_user_and_vhost_of_an_amqp_url() -> None:
    assert amqp.url_user("amqp://guest:guest@127.0.0.1:5672/") == "guest"
    assert amqp.url_user("amqp://127.0.0.1/") == "guest"  # what clients log in as
    assert amqp.url_user("amqp://a%40b:pw@host/v") == "a@b"
    assert amqp.url_vhost("amqp://guest:guest@127.0.0.1:5672/") == "/"
    assert amqp.url_vhost("amqp://host") == "/"
    assert amqp.url_vhost("amqp://host/%2F") == "/"
    assert amqp.url_vhost("amqp://host/herald-test-1") == "herald-test-1"


def test_a_producer_url_carries_any_password_intact() -> None:
    url = amqp.url_with_login("amqp://guest:guest@10.0.0.1:5672/v?heartbeat=5", "p@x", "a:/b@%")
    assert url == "amqp://p%40x:a%3A%2Fb%40%25@10.0.0.1:5672/v?heartbeat=5"
    assert amqp.url_user(url) == "p@x" and amqp.url_vhost(url) == "v"


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("acme-producer", True),
        ("", False),
        ("x" * 255, True),
        ("é" * 128, False),  # 256 bytes
        ("a\x00b", False),
    ],
)
def test_only_names_a_user_id_can_carry_are_users(name: str, valid: bool) -> None:
    assert valid_user(name) is valid


@dataclass
class Dead:
    """The parts of a dead message ``producer_of`` reads."""

    user_id: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)


def producer(message: Dead) -> str | None:
    return producer_of(cast(AbstractIncomingMessage, message))


def test_a_dead_message_names_its_producer_by_who_dead_lettered_it() -> None:
    # The bridge's copy: its own user_id is the bridge's; the header is the producer's.
    assert producer(Dead("guest", {amqp.PRODUCER_HEADER: "acme-producer"})) == "acme-producer"
    # RabbitMQ's own dead-lettering keeps the original, broker-checked user_id; a header
    # there is whatever the producer put in it.
    forged = {"x-death": [{"queue": "herald.email"}], amqp.PRODUCER_HEADER: "globex-producer"}
    assert producer(Dead("acme-producer", forged)) == "acme-producer"
    assert producer(Dead(None, forged)) is None
    assert producer(Dead("guest", {})) is None  # dead-lettered before producers existed


async def test_the_cache_asks_once_per_user_until_the_answer_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    acme = TenantContext(uuid.uuid4(), "acme", test=True)
    asked: list[str] = []

    async def lookup(_: AsyncEngine, user: str) -> TenantContext | None:
        asked.append(user)
        return acme if user == "acme-producer" else None

    monkeypatch.setattr(producers, "producer_tenant", lookup)
    now = [0.0]
    cache = ProducerCache(cast(AsyncEngine, None), ttl_seconds=5, timer=lambda: now[0])
    for _ in range(3):
        assert await cache.tenant_for("acme-producer") is acme
        assert await cache.tenant_for("stranger") is None
    assert asked == ["acme-producer", "stranger"]
    now[0] = 6.0
    assert await cache.tenant_for("stranger") is None
    assert asked == ["acme-producer", "stranger", "stranger"]


async def test_a_name_no_message_can_carry_is_refused_before_the_database() -> None:
    with pytest.raises(ProducerError, match="cannot be an AMQP user name"):
        await map_producer(cast(AsyncEngine, None), "a\x00b", "acme")
    assert await producers.producer_tenant(cast(AsyncEngine, None), "x" * 256) is None
