"""Authenticated RabbitMQ producers: which tenant an AMQP user publishes for.

A queued request belongs to the tenant mapped to the AMQP user that published it, read
from the message's ``user_id`` property. RabbitMQ refuses a publish whose ``user_id`` is
not the connection's own user (unless that user has the ``impersonator`` tag, which no
producer gets), so the property is authentic; a ``tenant`` field in the body is only
checked against it.

``add_producer`` creates the RabbitMQ user with ``rabbitmqctl``, not the management HTTP
API: ``rabbitmqctl`` ships with every broker and needs no plugin, while the management
plugin is optional (it is not enabled on the development broker) and would add a second
port and a second set of admin credentials to configure. ``rabbitmqctl`` reaches the
node named by ``RABBITMQ_NODENAME`` (default: the local one) with the Erlang cookie, so
``herald producer add`` runs where an operator can administer the broker.

The user may write to the ``herald.requests`` exchange only: it can neither declare
nor delete anything (configure), nor consume or bind (read), nor publish elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from cachetools import TTLCache
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from herald import amqp
from herald.db import Producer, Tenant, single_statements
from herald.tenants import TenantContext, ensure_tenant

# How long the bridge remembers which tenant (if any) a user publishes for: a message
# costs no query, and a new mapping is seen within seconds.
PRODUCER_CACHE_SECONDS: Final = 5.0
PRODUCER_CACHE_SIZE: Final = 10_000
# AMQP's user_id is a short string (255 bytes); a longer or NUL-bearing name is no user.
MAX_USER_BYTES: Final = 255
# The producer's permissions on its vhost (regular expressions over resource names).
NOTHING: Final = "^$"
WRITE_REQUESTS_ONLY: Final = f"^{re.escape(amqp.REQUESTS_EXCHANGE)}$"
_RABBITMQCTL_TIMEOUT = 60


class ProducerError(Exception):
    """A producer could not be added; the text says why."""


def valid_user(name: str) -> bool:
    """Whether ``name`` can be an AMQP user that a message's ``user_id`` names."""
    return 0 < len(name.encode()) <= MAX_USER_BYTES and "\x00" not in name


async def producer_tenant(engine: AsyncEngine, amqp_user: str) -> TenantContext | None:
    """The tenant ``amqp_user``'s messages belong to (``test`` from the mapping), or None
    for a user that is not a producer."""
    if not valid_user(amqp_user):
        return None
    query = (
        select(Tenant.id, Tenant.name, Tenant.rate_limit_per_minute, Producer.test)
        .join(Producer, Producer.tenant_id == Tenant.id)
        .where(Producer.amqp_user == amqp_user)
    )
    async with single_statements(engine) as conn:
        row = (await conn.execute(query)).first()
    if row is None:
        return None
    return TenantContext(row.id, row.name, row.rate_limit_per_minute, test=row.test)


class ProducerCache:
    """``producer_tenant`` remembered for ``PRODUCER_CACHE_SECONDS`` (unmapped users too,
    so a flood from one costs no query per message)."""

    def __init__(
        self,
        engine: AsyncEngine,
        ttl_seconds: float = PRODUCER_CACHE_SECONDS,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._known: TTLCache[str, TenantContext | None] = TTLCache(
            maxsize=PRODUCER_CACHE_SIZE, ttl=ttl_seconds, timer=timer
        )

    async def tenant_for(self, amqp_user: str) -> TenantContext | None:
        """The tenant ``amqp_user`` publishes for, or None."""
        try:
            return self._known[amqp_user]
        except KeyError:
            pass  # never asked, or the answer expired
        tenant = await producer_tenant(self._engine, amqp_user)
        self._known[amqp_user] = tenant
        return tenant


async def map_producer(
    engine: AsyncEngine, amqp_user: str, tenant: str, *, test: bool = False
) -> TenantContext:
    """Map an existing AMQP user to ``tenant`` (created if new); the producer's context.

    Raises :class:`ProducerError` if the user already publishes for a tenant.
    """
    if not valid_user(amqp_user):
        raise ProducerError(f"{amqp_user!r} cannot be an AMQP user name")
    context = await ensure_tenant(engine, tenant)
    async with engine.begin() as conn:
        added = await conn.execute(
            insert(Producer)
            .values(amqp_user=amqp_user, tenant_id=context.id, test=test)
            .on_conflict_do_nothing()
        )
    if not added.rowcount:
        raise ProducerError(f"AMQP user {amqp_user!r} is already a producer")
    return TenantContext(context.id, context.name, test=test)


@dataclass(frozen=True)
class NewProducer:
    """What ``herald producer add`` made: the user, its password (shown once) and the URL
    to publish with."""

    tenant: TenantContext
    amqp_user: str
    password: str
    amqp_url: str


def rabbitmqctl(*args: str, stdin: str | None = None) -> None:
    """Run one ``rabbitmqctl`` command; :class:`ProducerError` with its output if it fails."""
    try:
        done = subprocess.run(
            ["rabbitmqctl", "-q", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=_RABBITMQCTL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ProducerError(f"rabbitmqctl {args[0]}: {err}") from err
    if done.returncode != 0:
        output = " ".join((done.stderr or done.stdout).split()) or f"exit {done.returncode}"
        raise ProducerError(f"rabbitmqctl {args[0]}: {output}")


def _permissions(vhost: str, amqp_user: str) -> Sequence[str]:
    # configure, write, read
    return ("set_permissions", "-p", vhost, amqp_user, NOTHING, WRITE_REQUESTS_ONLY, NOTHING)


async def add_producer(
    engine: AsyncEngine,
    amqp_url: str,
    *,
    tenant: str,
    amqp_user: str | None = None,
    password: str | None = None,
    test: bool = False,
) -> NewProducer:
    """Create a RabbitMQ user that may only publish to ``herald.requests`` on the vhost of
    ``amqp_url``, and map it to ``tenant`` (created if new).

    The user is named ``<tenant>-producer`` unless ``amqp_user`` says otherwise; the
    password is generated unless given. If anything after creating the user fails, the
    user is deleted again, so nothing is left half made.
    """
    user = amqp_user or f"{tenant}-producer"
    if not valid_user(user) or user.startswith("-"):
        raise ProducerError(f"{user!r} cannot be an AMQP user name")
    secret = password or secrets.token_urlsafe(24)
    vhost = amqp.url_vhost(amqp_url)
    # The password goes through stdin, never onto a command line others can list.
    await asyncio.to_thread(rabbitmqctl, "add_user", user, stdin=secret)
    try:
        await asyncio.to_thread(rabbitmqctl, *_permissions(vhost, user))
        context = await map_producer(engine, user, tenant, test=test)
    except BaseException:
        with contextlib.suppress(ProducerError):  # the first error is the one to report
            await asyncio.to_thread(rabbitmqctl, "delete_user", user)
        raise
    return NewProducer(context, user, secret, amqp.url_with_login(amqp_url, user, secret))
