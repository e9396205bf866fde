"""Starting ``NotificationWorkflow``: its input, ids, fingerprint and template check, and
the one place it is started. Only ``herald.intake`` (every way in) calls the starts."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from cachetools import LRUCache
from sqlalchemy import RowMapping, select, tuple_
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from herald import search
from herald.contracts import (
    Channel,
    NotificationInput,
    NotificationRequest,
    ResendRequest,
    RetrySpec,
    workflow_id_for,
)
from herald.db import Notification, Template, single_statements
from herald.settings import Settings
from herald.templating import required_variables
from herald.temporal import channel_task_queue

log = logging.getLogger(__name__)

WORKFLOW = "NotificationWorkflow"
# Notification ids derived from Idempotency-Key live in their own UUID namespace.
_IDEMPOTENCY_NAMESPACE = uuid.UUID("7d1f4a36-0c9e-4f7b-9a53-2f4a0d6f8e11")


def idempotent_id(tenant_id: uuid.UUID, key: str) -> uuid.UUID:
    """The same tenant and key always name the same notification."""
    return uuid.uuid5(_IDEMPOTENCY_NAMESPACE, f"{tenant_id}:{key}")


def request_hash(request: NotificationRequest) -> str:
    """A fingerprint of what was asked, to tell a replay from a different request."""
    fields = request.model_dump(mode="json", include=set(NotificationRequest.model_fields))
    if not fields.get("fallback"):
        # Requests without a fallback hash as they did before the field existed.
        fields.pop("fallback", None)
    # Likewise requests of normal priority and without a digest.
    if fields.get("priority") == "normal":
        fields.pop("priority")
    if fields.get("digest") is None:
        fields.pop("digest", None)
    if fields.get("confirm_within_seconds") is None:
        # Likewise for requests that do not wait for a delivery receipt.
        fields.pop("confirm_within_seconds", None)
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def retry_spec(settings: Settings) -> RetrySpec:
    """The provider retry policy every new notification gets."""
    return RetrySpec(
        max_attempts=settings.max_attempts,
        initial_interval_seconds=settings.retry_initial_interval_seconds,
        backoff_coefficient=settings.retry_backoff_coefficient,
        maximum_interval_seconds=settings.retry_maximum_interval_seconds,
        send_timeout_seconds=settings.send_timeout_seconds,
        max_deferrals=settings.breaker_max_deferrals,
    )


def build_input(
    settings: Settings,
    *,
    notification_id: uuid.UUID,
    tenant_id: uuid.UUID,
    tenant: str,
    request: NotificationRequest,
    idempotency_key: str | None = None,
    request_id: str | None = None,
    cycle: int = 1,
    test: bool = False,
    broadcast_id: uuid.UUID | None = None,
) -> NotificationInput:
    """The workflow input for a new notification (or, with ``cycle``, a later send cycle);
    ``test`` for one made with a test key."""
    return NotificationInput(
        notification_id=notification_id,
        tenant_id=tenant_id,
        tenant=tenant,
        channel=request.channel,
        user_id=request.user_id,
        template=request.template,
        locale=request.locale,
        data=request.data,
        send_at=request.send_at,
        created_at=datetime.now(UTC),
        cycle=cycle,
        retry=retry_spec(settings),
        request_id=request_id,
        idempotency_key=idempotency_key,
        request_hash=request_hash(request),
        task_queue_prefix=settings.task_queue_prefix,
        fallback=request.fallback,
        priority=request.priority,
        digest=request.digest,
        test=test,
        confirm_within_seconds=request.confirm_within_seconds,
        broadcast_id=broadcast_id,
    )


async def find_notification(engine: AsyncEngine, notification_id: uuid.UUID) -> RowMapping | None:
    """The notification's row, whichever tenant it belongs to, if it was ever accepted."""
    async with engine.connect() as conn:
        found = await conn.execute(
            select(Notification.__table__).where(Notification.id == notification_id)
        )
        return found.mappings().first()


# Templates are never deleted: once a tenant's template has a version for a channel, it
# always will. Those seen are remembered per process, so a submission asks PostgreSQL
# only about templates it has not seen yet; past the bound, the least recently used
# (tenant, template, channel) is forgotten and asked about again when next used.
KNOWN_TEMPLATES_MAX: Final = 100_000
_known_templates: LRUCache[tuple[uuid.UUID, str, str], bool] = LRUCache(KNOWN_TEMPLATES_MAX)


async def missing_templates(
    engine: AsyncEngine, tenant_id: uuid.UUID, request: NotificationRequest
) -> list[Channel]:
    """The request's channels (fallbacks included) the template has no version for."""
    return (await missing_templates_many(engine, tenant_id, [request]))[0]


async def missing_templates_many(
    engine: AsyncEngine, tenant_id: uuid.UUID, requests: Sequence[NotificationRequest]
) -> list[list[Channel]]:
    """``missing_templates`` of every request, with one query for all those not yet seen."""
    unknown = {
        (request.template, channel.value)
        for request in requests
        for channel in request.channels
        # ``get`` (not ``in``) so a template in use stays recently used.
        if not _known_templates.get((tenant_id, request.template, channel.value), False)
    }
    if unknown:
        async with single_statements(engine) as conn:
            found = await conn.execute(
                select(Template.key, Template.channel)
                .where(
                    Template.tenant_id == tenant_id,
                    tuple_(Template.key, Template.channel).in_(sorted(unknown)),
                )
                .distinct()
            )
            for row in found:
                _known_templates[tenant_id, row.key, row.channel] = True
    return [
        [
            channel
            for channel in request.channels
            if not _known_templates.get((tenant_id, request.template, channel.value), False)
        ]
        for request in requests
    ]


@dataclass(frozen=True)
class TemplateVersion:
    """The latest version of a template in one locale, and the top-level ``data``
    variables every render of it needs (``herald.templating.required_variables``)."""

    locale: str
    version: int
    needs: frozenset[str]


# Versions are never changed: what one needs is worked out once per process. Which
# version is the latest is asked every time, so a new version counts at once.
VERSION_NEEDS_MAX: Final = 10_000
_version_needs: LRUCache[tuple[uuid.UUID, str, str, str, int], frozenset[str]] = LRUCache(
    VERSION_NEEDS_MAX
)


def _needs(subject: str | None, body: str) -> frozenset[str]:
    return required_variables(body) | (required_variables(subject) if subject else frozenset())


# Notified (``pg_notify``, by a trigger on ``templates``) with ``tenant:channel:key``
# whenever a template gets a new version.
TEMPLATE_CHANNEL: Final = "herald_template_versions"
LATEST_VERSIONS_MAX: Final = 100_000

_Pair = tuple[str, str]
_Version = tuple[str, str, str, int]


class LatestVersions:
    """The latest version of each (tenant, template, channel) in each locale, remembered
    only while a listener hears every new version (``api/revocations.py``); without one
    (``listening`` unset), every submission asks PostgreSQL, so a new version counts at
    once either way."""

    def __init__(self) -> None:
        self.listening = asyncio.Event()
        self._versions: LRUCache[tuple[uuid.UUID, str, str], list[_Version]] = LRUCache(
            LATEST_VERSIONS_MAX
        )
        # Bumped by every change heard: an answer read before it is not remembered.
        self.generation = 0

    def get(self, tenant_id: uuid.UUID, pair: _Pair) -> list[_Version] | None:
        if not self.listening.is_set():
            return None
        return self._versions.get((tenant_id, *pair))

    def remember(
        self, tenant_id: uuid.UUID, pair: _Pair, versions: list[_Version], generation: int
    ) -> None:
        if self.listening.is_set() and generation == self.generation and versions:
            self._versions[tenant_id, *pair] = versions

    def forget(self, payload: str) -> None:
        """``tenant:channel:key`` got a new version."""
        self.generation += 1
        try:
            tenant, channel, key = payload.split(":", 2)
            self._versions.pop((uuid.UUID(tenant), key, channel), None)
        except ValueError:  # not one this code writes: forget everything
            self.forget_all()

    def forget_all(self) -> None:
        self.generation += 1
        self._versions.clear()


_latest = LatestVersions()


def latest_versions_cache() -> LatestVersions:
    """This process's ``LatestVersions``."""
    return _latest


async def latest_versions_many(
    engine: AsyncEngine, tenant_id: uuid.UUID, wanted: Collection[tuple[str, Channel]]
) -> dict[tuple[str, Channel], list[TemplateVersion]]:
    """The latest version in each locale of each (template, channel), with what it needs:
    remembered (``LatestVersions``), or one query, and one more for the sources of
    versions not seen before."""
    if not wanted:
        return {}
    pairs = sorted({(key, channel.value) for key, channel in wanted})
    versions: list[_Version] = []
    asked: list[_Pair] = []
    for pair in pairs:
        known = _latest.get(tenant_id, pair)
        if known is None:
            asked.append(pair)
        else:
            versions += known
    needs: dict[_Version, frozenset[str]] = {}
    unseen: list[_Version] = []
    if asked:
        generation = _latest.generation
        async with single_statements(engine) as conn:
            latest = (
                await conn.execute(
                    select(Template.key, Template.channel, Template.locale, Template.version)
                    .where(
                        Template.tenant_id == tenant_id,
                        tuple_(Template.key, Template.channel).in_(asked),
                    )
                    .ext(distinct_on(Template.key, Template.channel, Template.locale))
                    .order_by(
                        Template.key, Template.channel, Template.locale, Template.version.desc()
                    )
                )
            ).all()
        read = [(row.key, row.channel, row.locale, row.version) for row in latest]
        for pair in asked:
            _latest.remember(tenant_id, pair, [v for v in read if (v[0], v[1]) == pair], generation)
        versions += read
    for version in versions:
        # ``get`` (not ``in``) so a version in use stays recently used.
        cached = _version_needs.get((tenant_id, *version))
        if cached is not None:
            needs[version] = cached
        else:
            unseen.append(version)
    if unseen:
        async with single_statements(engine) as conn:
            sources = (
                await conn.execute(
                    select(
                        Template.key,
                        Template.channel,
                        Template.locale,
                        Template.version,
                        Template.subject,
                        Template.body,
                    ).where(
                        Template.tenant_id == tenant_id,
                        tuple_(
                            Template.key, Template.channel, Template.locale, Template.version
                        ).in_(unseen),
                    )
                )
            ).all()
        # Parsing is CPU work: off the event loop.
        parsed = await asyncio.to_thread(lambda: [_needs(row.subject, row.body) for row in sources])
        for source, needed in zip(sources, parsed, strict=True):
            version = (source.key, source.channel, source.locale, source.version)
            needs[version] = _version_needs[tenant_id, *version] = needed
    found: dict[tuple[str, Channel], list[TemplateVersion]] = {}
    for version in versions:
        key, channel, locale, number = version
        found.setdefault((key, Channel(channel)), []).append(
            TemplateVersion(locale, number, needs.get(version, frozenset()))
        )
    return found


def _visibility(notification: NotificationInput) -> dict[str, Any]:
    """What makes the workflow findable and readable in the Temporal UI and CLI."""
    return {
        "memo": {
            "request_hash": notification.request_hash or "",
            "request_id": notification.request_id or "",
        },
        "search_attributes": search.at_start(notification),
        "static_summary": search.summary(notification),
        "static_details": search.details(notification),
    }


async def _start(
    client: Client, settings: Settings, notification: NotificationInput, **how: Any
) -> None:
    """The one place a ``NotificationWorkflow`` is started."""
    await client.start_workflow(
        WORKFLOW,
        notification,
        id=workflow_id_for(notification.notification_id),
        task_queue=channel_task_queue(notification.channel, settings.task_queue_prefix),
        **_visibility(notification),
        **how,
    )


async def start_notification(
    client: Client, settings: Settings, notification: NotificationInput
) -> bool:
    """Durably start the workflow; ``False`` if this notification id was started before.

    The workflow id is the notification id and ids are never reused for a new
    notification, so a replayed request or redelivered message starts nothing. With
    ``api_eager`` the first workflow task comes back with the start, for a worker of the
    channel on this same client (the API's email worker); without one in this process
    the SDK does not ask, and the task goes through the queue as always.
    """
    try:
        await _start(
            client,
            settings,
            notification,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            request_eager_start=settings.api_eager,
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


async def start_resend(client: Client, settings: Settings, notification: NotificationInput) -> None:
    """Start the next send cycle: a new run under the same workflow id.

    If the previous run is still finishing, the ``resend`` signal reaches it instead and
    it continues into the same next cycle.
    """
    await _start(
        client,
        settings,
        notification,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        start_signal="resend",
        start_signal_args=[ResendRequest()],
    )


async def find_notifications(
    engine: AsyncEngine, tenant_id: uuid.UUID | None, notification_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, RowMapping]:
    """The rows of those of ``notification_ids`` the tenant has (any tenant's with
    ``tenant_id`` None), by id, in one query."""
    if not notification_ids:
        return {}
    query = select(Notification.__table__).where(Notification.id.in_(notification_ids))
    if tenant_id is not None:
        query = query.where(Notification.tenant_id == tenant_id)
    async with engine.connect() as conn:
        found = await conn.execute(query)
        return {row["id"]: row for row in found.mappings()}


# What ``start_many`` and ``accept_many`` answer per notification: True started now, False
# started before (the same id), or the error that kept it from starting.
StartOutcome = bool | Exception


async def start_many(
    client: Client,
    settings: Settings,
    notifications: Sequence[NotificationInput],
    *,
    concurrency: int,
    slot: Callable[[], AbstractAsyncContextManager[Any]] | None = None,
    per_second: float | None = None,
) -> list[StartOutcome]:
    """``start_notification`` for each, at most ``concurrency`` at a time, in order.

    ``slot`` is held around each start (the API's admission control); an error from it
    or from the start is that notification's outcome, and the others go on. With
    ``per_second``, the i-th start waits until i / per_second seconds from now: a steady
    stream instead of a burst.
    """
    bound = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()
    begun = loop.time()

    async def start(index: int, notification: NotificationInput) -> StartOutcome:
        if per_second:
            await asyncio.sleep(max(0.0, begun + index / per_second - loop.time()))
        async with bound:
            try:
                if slot is None:
                    return await start_notification(client, settings, notification)
                async with slot():
                    return await start_notification(client, settings, notification)
            except Exception as err:
                return err

    return list(await asyncio.gather(*(start(i, n) for i, n in enumerate(notifications))))
