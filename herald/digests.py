"""Submitting a request that joins a digest: the other half of ``herald.submission``,
shared by the REST API and the RabbitMQ bridge.

A request with ``digest`` (and not ``priority: urgent``) starts no notification of its
own: it is signalled, with signal-with-start, to the ``DigestWorkflow`` of its tenant,
user, channel, template and digest key (``workflows/digest.py`` explains how windows
close and why no item is lost or doubled). The signal carries the request's id and a
few small facts, never its ``data``: that lives in the request's notification row, and
the digest's template reads every member's data from PostgreSQL when it renders
(``activities/digests.py``), so a digest of any size fits Temporal's payload limit.

The signal is durable in Temporal first, then the row is written; only then does the
client get its ``202``. A crash between the two leaves an id without a row: the digest
waits a little for it, then lets it go (nobody was told it was accepted), and a retry
of the request signals it again.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)

from herald import search, statuslog
from herald.contracts import (
    DigestInput,
    DigestItem,
    NotificationInput,
    NotificationRequest,
    Priority,
    Status,
)
from herald.db import Digest, Notification
from herald.settings import Settings
from herald.temporal import core_task_queue

WORKFLOW = "DigestWorkflow"
SIGNAL = "add"
# The key of a digest notification's ``data`` naming its digest: the render step reads
# the members' data (``items``) from PostgreSQL through it.
DIGEST_ID_KEY = "digest_id"
# A closed digest's notification id is derived from the digest's: a retried close
# starts the same notification, never a second one.
_NOTIFICATION_NAMESPACE = uuid.UUID("1c0b9d5e-7a43-4c55-9f6e-3d2b8a1e64f0")
_DIGEST_NAMESPACE = uuid.UUID("5e8f2c71-b0d4-4e9a-8c36-9a7d1f2e0b53")


def joins_digest(request: NotificationRequest) -> bool:
    """Whether the request becomes part of a digest (``urgent`` skips it)."""
    return request.digest is not None and request.priority is not Priority.urgent


def digest_workflow_id(notification: NotificationInput) -> str:
    """``digest-<hash>``: one workflow per tenant, user, channel, template and digest
    key (no PII in the id: the parts are hashed)."""
    assert notification.digest is not None
    parts = "\x1f".join(
        [
            str(notification.tenant_id),
            notification.user_id,
            notification.channel.value,
            notification.template,
            notification.digest.key,
            # Test and live requests never share a digest (live ids stay as they were).
            *(["test"] if notification.test else []),
        ]
    )
    return f"digest-{hashlib.sha256(parts.encode()).hexdigest()[:32]}"


def digest_id_for(workflow_id: str, run_id: str) -> uuid.UUID:
    """One digest per workflow run (each window is a run of its own)."""
    return uuid.uuid5(_DIGEST_NAMESPACE, f"{workflow_id}/{run_id}")


def digest_notification_id(digest_id: uuid.UUID) -> uuid.UUID:
    """The id of the one notification a digest is sent as."""
    return uuid.uuid5(_NOTIFICATION_NAMESPACE, str(digest_id))


def digest_input(notification: NotificationInput) -> DigestInput:
    """The input of a digest run this request opens (ignored when one is open)."""
    digest = notification.digest
    assert digest is not None
    return DigestInput(
        tenant_id=notification.tenant_id,
        tenant=notification.tenant,
        user_id=notification.user_id,
        channel=notification.channel,
        template=notification.template,
        key=digest.key,
        window_seconds=digest.window_seconds,
        max_items=digest.max_items,
        task_queue_prefix=notification.task_queue_prefix,
        test=notification.test,
    )


def _visibility(notification: NotificationInput) -> dict[str, Any]:
    """Search attributes and summary of a digest: ``scheduled`` while it collects."""
    assert notification.digest is not None
    return {
        "search_attributes": TypedSearchAttributes(
            [
                SearchAttributePair(search.STATUS, Status.scheduled.value),
                *search.at_start(notification),
            ]
        ),
        "static_summary": (
            f"digest {notification.digest.key} · {notification.channel.value} · template "
            f"{notification.template} · tenant {notification.tenant}"
        ),
        "static_details": (
            f"Collects requests for {notification.digest.window_seconds}s from the first, "
            f"then sends them as one notification.\n\n"
            f"**tenant** {notification.tenant} · **user** `{notification.user_id}`"
        ),
    }


async def signal_digest(
    client: Client, settings: Settings, notification: NotificationInput
) -> WorkflowHandle[Any, Any]:
    """Signal-with-start: add the request to its open digest, or open one. Returns (the
    digest run's handle) once Temporal has persisted the signal."""
    return await client.start_workflow(
        WORKFLOW,
        digest_input(notification),
        id=digest_workflow_id(notification),
        task_queue=core_task_queue(settings),
        # A closed digest's id opens the next digest; an open one takes the signal.
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        start_signal=SIGNAL,
        start_signal_args=[
            DigestItem(
                notification_id=notification.notification_id,
                locale=notification.locale,
                request_id=notification.request_id,
            )
        ],
        **_visibility(notification),
    )


async def accept(
    client: Client, engine: AsyncEngine, settings: Settings, notification: NotificationInput
) -> bool:
    """The digest counterpart of ``submission.accept``: record ``accepted``, then signal
    durably. The row comes first because it holds the request's data, which the digest
    reads when it takes the request in: so the digest finds it at once, however busy the
    API is. If the signal then fails, the request is not accepted (the error propagates)
    and its row waits, ``accepted`` and in no digest, for the retry: the intake signals a
    request in that state again. Always True: a request signalled twice is still one item,
    because the digest workflow claims each request once."""
    await statuslog.record_accepted(engine, notification)
    await signal_digest(client, settings, notification)
    return True


def digest_data(digest_id: uuid.UUID, count: int) -> dict[str, Any]:
    """The ``data`` a digest's notification is started with: ids and small facts only."""
    return {"count": count, DIGEST_ID_KEY: str(digest_id)}


def digest_of(notification_id: uuid.UUID | None, data: dict[str, Any]) -> uuid.UUID | None:
    """The digest whose notification ``notification_id`` is, if ``data`` names it (a
    request's own data naming some digest does not make it that digest's notification)."""
    named = data.get(DIGEST_ID_KEY)
    if notification_id is None or not isinstance(named, str):
        return None
    try:
        digest_id = uuid.UUID(named)
    except ValueError:
        return None
    return digest_id if digest_notification_id(digest_id) == notification_id else None


_NOTIFICATIONS = Notification.__table__
_SENT_AS = _NOTIFICATIONS.alias("sent_as")


def with_digest_status(query: Select[*tuple[Any, ...]]) -> Select[*tuple[Any, ...]]:
    """Notifications as the API shows them: a request that joined a digest carries its
    ``digest_id`` and, once the digest closed, the status of the notification it was
    sent as (and that notification's id as ``digest_notification_id``)."""
    return (
        query.outerjoin(Digest, Digest.id == Notification.digest_id)
        .outerjoin(_SENT_AS, _SENT_AS.c.id == Digest.notification_id)
        .add_columns(
            Digest.notification_id.label("digest_notification_id"),
            _SENT_AS.c.status.label("digest_status"),
            _SENT_AS.c.provider.label("digest_provider"),
            _SENT_AS.c.provider_message_id.label("digest_provider_message_id"),
            _SENT_AS.c.last_error.label("digest_last_error"),
            _SENT_AS.c.updated_at.label("digest_updated_at"),
        )
    )


def notification_view(row: Any) -> dict[str, Any]:
    """A row of ``with_digest_status`` as ``NotificationOut`` fields."""
    fields = {key: value for key, value in row.items() if not key.startswith("digest_")}
    fields["digest_id"] = row.get("digest_id")
    fields["digest_notification_id"] = row.get("digest_notification_id")
    if row.get("digest_status") is not None:
        fields.update(
            status=row["digest_status"],
            provider=row["digest_provider"],
            provider_message_id=row["digest_provider_message_id"],
            last_error=row["digest_last_error"],
            updated_at=max(row["updated_at"], row["digest_updated_at"]),
        )
    return fields


def notifications_select() -> Select[*tuple[Any, ...]]:
    """``SELECT`` of notifications with their digest's status (see ``with_digest_status``)."""
    return with_digest_status(select(_NOTIFICATIONS))
