"""One intake: every way a notification starts goes through here.

The REST single and batch routes, the RabbitMQ bridge, a broadcast's fan-out, a digest's
send, resend and the dead-letter replay each hand the intake the tenant they act for
(its id, name and test mode) and their requests, and get one typed outcome per request.
Each caller only turns outcomes into its own answer: an HTTP status, an ack or a dead
letter, an activity result. What the intake owns, so that no door can drift from the
others:

- the notification id: chosen by the caller (a queued message's id, a broadcast
  recipient's derived id), derived from an idempotency key (a test key's keys in a
  namespace of their own, so they never meet a live key's), or new;
- replay and conflicting reuse of an id (one query for all of a call's requests), and
  two requests racing with one key;
- the template check (every channel of the request, fallbacks included), and the data
  check: ``data`` must hold every variable the latest version needs (``422`` naming them);
- test mode: everything a test tenant context starts is a test notification, and a test
  notification never reaches a provider (``activities/providers/testmode.py``);
- digest routing (a request with ``digest`` joins its digest instead of starting);
- the admission slot, the workflow start (``herald.submission``) and the bulk
  ``accepted`` write.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from herald import digests, statuslog, submission
from herald.contracts import Channel, NotificationInput, NotificationRequest
from herald.settings import Settings
from herald.templating import pick_locale
from herald.tenants import TenantContext

log = logging.getLogger(__name__)

# How long a request whose id another request is starting right now waits for its row.
RACE_WAIT_SECONDS = 5.0
REUSED_KEY = "Idempotency-Key was already used with a different request body"


def idempotency_namespace(tenant: TenantContext, key: str) -> str:
    """The key as stored: a test key's keys live apart from a live key's."""
    return f"test:{key}" if tenant.test else key


def idempotent_id(tenant: TenantContext, key: str) -> uuid.UUID:
    """The id an idempotency key names for this tenant context (test keys apart)."""
    return submission.idempotent_id(tenant.id, idempotency_namespace(tenant, key))


@dataclass(frozen=True)
class Submission:
    """One request to accept.

    ``notification_id`` is for a caller that chose the id itself (a queued message, a
    broadcast recipient, a digest); otherwise ``idempotency_key`` names it, or it is new.
    """

    request: NotificationRequest
    idempotency_key: str | None = None
    notification_id: uuid.UUID | None = None
    broadcast_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Accepted:
    """Started now (or, with ``digest``, joined its digest)."""

    notification: NotificationInput
    digest: bool = False

    @property
    def notification_id(self) -> uuid.UUID:
        """The accepted notification's id."""
        return self.notification.notification_id


@dataclass(frozen=True)
class Replayed:
    """The same request was accepted before under this id: nothing new was started."""

    notification_id: uuid.UUID


@dataclass(frozen=True)
class Conflict:
    """The id already names a different request (409, or a dead letter)."""

    notification_id: uuid.UUID
    message: str


@dataclass(frozen=True)
class Invalid:
    """The request can never be accepted as it is: ``field`` says where."""

    field: str
    message: str


@dataclass(frozen=True)
class Unstarted:
    """Nothing was accepted because a service said no for now (the admission gate's 503,
    Temporal unavailable): the caller may retry."""

    error: Exception


Outcome = Accepted | Replayed | Conflict | Invalid | Unstarted


@dataclass
class _Item:
    index: int
    submission: Submission
    notification_id: uuid.UUID
    fingerprint: str
    keyed: bool
    outcome: Outcome | None = field(default=None)
    rejoin: bool = False


class Intake:
    """Accepts requests for one process: built once around its Temporal client, engine
    and settings. ``slot`` (the API's admission gate) is held around each start."""

    def __init__(
        self,
        client: Client,
        engine: AsyncEngine,
        settings: Settings,
        *,
        slot: Callable[[], AbstractAsyncContextManager[Any]] | None = None,
    ) -> None:
        self._client = client
        self._engine = engine
        self._settings = settings
        self._slot = slot

    async def accept_one(
        self, tenant: TenantContext, item: Submission, *, request_id: str | None = None
    ) -> Outcome:
        """``accept`` for a single request."""
        return (await self.accept(tenant, [item], request_id=request_id))[0]

    async def accept(
        self,
        tenant: TenantContext,
        items: Sequence[Submission],
        *,
        request_id: str | None = None,
        per_second: float | None = None,
    ) -> list[Outcome]:
        """Accept each request on its own; one outcome per request, in order.

        With ``per_second`` the starts are paced into a steady stream (a broadcast page).
        """
        pending = [self._identify(tenant, index, item) for index, item in enumerate(items)]
        first_of: dict[uuid.UUID, _Item] = {}
        repeats: list[_Item] = []
        for item in pending:
            if item.notification_id in first_of:
                repeats.append(item)  # answered as the earlier request with its id
            else:
                first_of[item.notification_id] = item
        fresh = list(first_of.values())

        known = await self._known(tenant, fresh)
        fresh = [item for item in fresh if not self._answer_known(tenant, item, known)]
        for item in first_of.values():
            if item.rejoin:
                joined = await self._join_digest(self._input(tenant, item, request_id))
                if isinstance(joined, Unstarted):
                    item.outcome = joined
        await self._check_templates(tenant, fresh)
        to_start = [item for item in fresh if item.outcome is None]
        await self._start(tenant, to_start, request_id=request_id, per_second=per_second)

        for item in repeats:
            item.outcome = self._repeat_outcome(item, first_of[item.notification_id])
        outcomes = [item.outcome for item in pending]
        assert all(outcome is not None for outcome in outcomes)
        return outcomes  # type: ignore[return-value]

    def _identify(self, tenant: TenantContext, index: int, item: Submission) -> _Item:
        if item.notification_id is not None:
            notification_id, keyed = item.notification_id, False
        elif item.idempotency_key is not None:
            notification_id, keyed = idempotent_id(tenant, item.idempotency_key), True
        else:
            notification_id, keyed = uuid.uuid4(), False
        return _Item(index, item, notification_id, submission.request_hash(item.request), keyed)

    async def _known(
        self, tenant: TenantContext, items: Sequence[_Item]
    ) -> Mapping[uuid.UUID, RowMapping]:
        """Rows of the ids a caller chose or a key named (a new random id has none)."""
        named = [
            item.notification_id
            for item in items
            if item.keyed or item.submission.notification_id is not None
        ]
        return await submission.find_notifications(self._engine, None, named)

    @staticmethod
    def _answer_known(
        tenant: TenantContext, item: _Item, known: Mapping[uuid.UUID, RowMapping]
    ) -> bool:
        row = known.get(item.notification_id)
        if row is None:
            return False
        item.outcome = _judge(tenant, item, row)
        # Recorded, then its signal failed: it is signalled again (and still a replay).
        item.rejoin = isinstance(item.outcome, Replayed) and _awaits_its_digest(item, row)
        return True

    async def _check_templates(self, tenant: TenantContext, items: Sequence[_Item]) -> None:
        problems = await template_problems(
            self._engine,
            tenant,
            [item.submission.request for item in items],
            check_data=[_renders_its_data(item) for item in items],
        )
        for item, problem in zip(items, problems, strict=True):
            if problem is not None:
                item.outcome = problem

    def _input(
        self, tenant: TenantContext, item: _Item, request_id: str | None
    ) -> NotificationInput:
        key = item.submission.idempotency_key
        return submission.build_input(
            self._settings,
            notification_id=item.notification_id,
            tenant_id=tenant.id,
            tenant=tenant.name,
            request=item.submission.request,
            idempotency_key=idempotency_namespace(tenant, key) if key is not None else None,
            request_id=request_id,
            test=tenant.test,
            broadcast_id=item.submission.broadcast_id,
        )

    async def _start(
        self,
        tenant: TenantContext,
        items: Sequence[_Item],
        *,
        request_id: str | None,
        per_second: float | None,
    ) -> None:
        if not items:
            return
        inputs = [self._input(tenant, item, request_id) for item in items]
        joining = [
            (item, notification)
            for item, notification in zip(items, inputs, strict=True)
            if digests.joins_digest(item.submission.request)
        ]
        for item, notification in joining:
            item.outcome = await self._join_digest(notification)
        starting = [
            (item, notification)
            for item, notification in zip(items, inputs, strict=True)
            if not digests.joins_digest(item.submission.request)
        ]
        if not starting:
            return
        started = await submission.start_many(
            self._client,
            self._settings,
            [notification for _, notification in starting],
            concurrency=self._settings.batch_start_concurrency,
            slot=self._slot,
            per_second=per_second,
        )
        raced: list[_Item] = []
        chosen_raced: list[NotificationInput] = []
        for (item, notification), result in zip(starting, started, strict=True):
            if result is True:
                item.outcome = Accepted(notification)
            elif result is False:
                if item.keyed:
                    raced.append(item)  # the same key, accepted by a request running meanwhile
                else:
                    # Started before under the id its caller chose (a redelivered message,
                    # a retried page or digest send): make sure its row is there.
                    item.outcome = Replayed(item.notification_id)
                    chosen_raced.append(notification)
            else:
                item.outcome = Unstarted(result)
        await self._record_accepted(
            [
                item.outcome.notification
                for item, _ in starting
                if isinstance(item.outcome, Accepted)
            ]
            + chosen_raced
        )
        if raced:
            await self._answer_raced(tenant, raced)
        accepted = [item.outcome for item in items if isinstance(item.outcome, Accepted)]
        if len(items) == 1 and accepted:
            (notification,) = [outcome.notification for outcome in accepted]
            log.info(
                "notification accepted",
                extra={
                    "notification_id": str(notification.notification_id),
                    "tenant": tenant.name,
                    "test": tenant.test,
                    "channel": notification.channel.value,
                    "template": notification.template,
                },
            )
        elif len(items) > 1:
            log.info(
                "notifications accepted",
                extra={
                    "tenant": tenant.name,
                    "test": tenant.test,
                    "accepted": len(accepted),
                    "requests": len(items),
                },
            )

    async def _join_digest(self, notification: NotificationInput) -> Outcome:
        try:
            if self._slot is None:
                await digests.accept(self._client, self._engine, self._settings, notification)
            else:
                async with self._slot():
                    await digests.accept(self._client, self._engine, self._settings, notification)
        except Exception as err:
            return Unstarted(err)
        return Accepted(notification, digest=True)

    async def _record_accepted(self, notifications: Sequence[NotificationInput]) -> None:
        """The ``accepted`` rows in one statement. A failed write is only logged: each
        workflow writes its own row as its first step."""
        try:
            await statuslog.record_accepted_many(self._engine, notifications)
        except Exception:
            log.warning(
                "accepted notifications not yet recorded; their workflows will record them",
                extra={"count": len(notifications)},
                exc_info=True,
            )

    async def _answer_raced(self, tenant: TenantContext, raced: list[_Item]) -> None:
        """Answer the requests another request started first, once their rows are there."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RACE_WAIT_SECONDS
        while raced:
            rows = await submission.find_notifications(
                self._engine, tenant.id, [item.notification_id for item in raced]
            )
            waiting = []
            for item in raced:
                row = rows.get(item.notification_id)
                if row is not None:
                    item.outcome = _judge(tenant, item, row)
                else:
                    waiting.append(item)
            raced = waiting
            if raced and loop.time() > deadline:
                for item in raced:
                    item.outcome = Conflict(
                        item.notification_id,
                        "a request with this idempotency key is still being accepted; retry",
                    )
                return
            if raced:
                await asyncio.sleep(0.1)

    @staticmethod
    def _repeat_outcome(item: _Item, first: _Item) -> Outcome:
        """A request naming the same id as an earlier one of the same call."""
        outcome = first.outcome
        if isinstance(outcome, Accepted | Replayed):
            if item.fingerprint != first.fingerprint:
                return Conflict(item.notification_id, REUSED_KEY)
            return Replayed(item.notification_id)
        assert outcome is not None
        return outcome

    async def resend(
        self, row: RowMapping, *, tenant: str, request_id: str | None = None
    ) -> NotificationInput:
        """Start the next send cycle of the notification ``row`` (one that has ended),
        in the test mode it was made in, then record its ``accepted``."""
        request = NotificationRequest(
            channel=row["channel"],
            user_id=row["user_id"],
            template=row["template"],
            locale=row["locale"],
            data=row["data"],
            fallback=row["fallback"] or [],
        )
        notification = submission.build_input(
            self._settings,
            notification_id=row["id"],
            tenant_id=row["tenant_id"],
            tenant=tenant,
            request=request,
            request_id=request_id,
            cycle=row["cycle"] + 1,
            test=row["test"],
            broadcast_id=row.get("broadcast_id"),
        )
        await submission.start_resend(self._client, self._settings, notification)
        await statuslog.record_accepted(self._engine, notification)
        return notification


async def template_problems(
    engine: AsyncEngine,
    tenant: TenantContext,
    requests: Sequence[NotificationRequest],
    *,
    check_data: Sequence[bool] | None = None,
) -> list[Invalid | None]:
    """Per request, why its template cannot serve it, or None: a channel (fallbacks
    included) with no version, or ``data`` without a variable the latest version needs
    (``check_data`` False for a request whose own ``data`` is not what renders)."""
    missing = await submission.missing_templates_many(engine, tenant.id, requests)
    problems: list[Invalid | None] = []
    for request, absent in zip(requests, missing, strict=True):
        if not absent:
            problems.append(None)
            continue
        channels = ", ".join(channel.value for channel in absent)
        problems.append(
            Invalid(
                "template" if request.channel in absent else "fallback",
                f"no {channels} template {request.template!r} (no {channels} version of it); "
                "create it first",
            )
        )
    checked = [
        index
        for index, problem in enumerate(problems)
        if problem is None and (check_data is None or check_data[index])
    ]
    if checked:
        versions = await submission.latest_versions_many(
            engine,
            tenant.id,
            {(requests[i].template, channel) for i in checked for channel in requests[i].channels},
        )
        for index in checked:
            problems[index] = missing_data(requests[index], versions)
    return problems


# Names the render step supplies itself: ``unsubscribe_url`` for any category but
# ``transactional`` (counted as supplied whatever the category, so nothing is refused
# that could render).
SUPPLIED_DATA = frozenset({"unsubscribe_url"})


def missing_data(
    request: NotificationRequest,
    versions: Mapping[tuple[str, Channel], Sequence[submission.TemplateVersion]],
) -> Invalid | None:
    """``data`` without a variable each version the request may render needs."""
    given = SUPPLIED_DATA | request.data.keys()
    found = []
    for channel in request.channels:
        candidates = list(versions.get((request.template, channel), ()))
        if request.locale is not None:
            # The locale is the request's: the render picks exactly this one.
            locale = pick_locale([version.locale for version in candidates], request.locale)
            candidates = [version for version in candidates if version.locale == locale]
        # Otherwise the recipient's locale picks one when it renders: only what every
        # locale needs is sure to be missing.
        if not candidates:
            continue
        lacking = frozenset.intersection(*(version.needs for version in candidates)) - given
        if lacking:
            numbers = sorted({version.version for version in candidates})
            which = (
                f"version {numbers[0]}"
                if len(numbers) == 1
                else "versions "
                + ", ".join(f"{version.version} ({version.locale})" for version in candidates)
            )
            found.append(
                f"template {request.template!r} ({channel.value}, {which}) needs data: "
                + ", ".join(sorted(lacking))
            )
    return Invalid("data", "; ".join(found)) if found else None


def _renders_its_data(item: _Item) -> bool:
    """Whether the request's own ``data`` is what its template renders with. Not for a
    request joining a digest (its data is one of the digest's ``items``; the digest's
    template, whichever version is latest when it closes, gets ``items`` and ``count``),
    the notification a digest becomes (its items are read when it renders), or a
    broadcast's recipient (the broadcast's data was checked when it was created; a
    page refused now would stop the broadcast halfway)."""
    request = item.submission.request
    return not (
        digests.joins_digest(request)
        or digests.digest_of(item.notification_id, request.data) is not None
        or item.submission.broadcast_id is not None
    )


def _awaits_its_digest(item: _Item, row: RowMapping) -> bool:
    """A request for a digest whose row was written but that no digest took in yet."""
    return (
        digests.joins_digest(item.submission.request)
        and row["digest_id"] is None
        and row["status"] == "accepted"
    )


def _judge(tenant: TenantContext, item: _Item, row: RowMapping) -> Outcome:
    """A known id: the same request again, or a different one under it."""
    same = (
        row["tenant_id"] == tenant.id
        and bool(row["test"]) == tenant.test
        # Rows written before requests were fingerprinted match any request.
        and row["request_hash"] in (None, item.fingerprint)
    )
    if same:
        return Replayed(item.notification_id)
    if item.keyed:
        return Conflict(item.notification_id, REUSED_KEY)
    return Conflict(
        item.notification_id, f"id {item.notification_id} already names a different notification"
    )
