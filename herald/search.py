"""Typed search attributes and the UI summary that keep every notification findable in the
Temporal UI and CLI (``HeraldStatus="retrying"``, ``HeraldChannel="sms"``, ...).

One definition serves the workflow (upserts on every transition), the submission path
(attributes at start), ``herald dev`` (registered on the embedded server) and
``herald temporal setup`` (registered on an existing cluster). Values carry no PII: the
recipient is the client's opaque user id, never an address.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import (
    SearchAttributeIndexedValueType,
    SearchAttributeKey,
    SearchAttributePair,
    SearchAttributeUpdate,
    TypedSearchAttributes,
)

from herald.contracts import NotificationInput, Status
from herald.settings import Settings
from herald.temporal import connect

STATUS = SearchAttributeKey.for_keyword("HeraldStatus")
CHANNEL = SearchAttributeKey.for_keyword("HeraldChannel")
TEMPLATE = SearchAttributeKey.for_keyword("HeraldTemplate")
TENANT = SearchAttributeKey.for_keyword("HeraldTenant")
RECIPIENT = SearchAttributeKey.for_keyword("HeraldRecipient")
ATTEMPTS = SearchAttributeKey.for_int("HeraldAttempts")
# When the current status began: how ``herald stuck`` tells "sending for too long".
STATUS_SINCE = SearchAttributeKey.for_datetime("HeraldStatusSince")

# How many recipients a broadcast workflow has started so far (its status, channel,
# template and tenant use the keys above).
BROADCAST_STARTED = SearchAttributeKey.for_int("HeraldBroadcastStarted")

# A flow run (``FlowRun``) is found by its flow's key and its state (running, completed,
# cancelled, failed); its tenant and recipient use the keys above.
FLOW = SearchAttributeKey.for_keyword("HeraldFlow")
FLOW_STATE = SearchAttributeKey.for_keyword("HeraldFlowState")

KEYS: tuple[SearchAttributeKey[Any], ...] = (
    STATUS,
    CHANNEL,
    TEMPLATE,
    TENANT,
    RECIPIENT,
    ATTEMPTS,
    STATUS_SINCE,
    BROADCAST_STARTED,
    FLOW,
    FLOW_STATE,
)

_CLI_TYPE_NAMES = {
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.INT: "Int",
    SearchAttributeIndexedValueType.DATETIME: "Datetime",
}

# name → type as the ``temporal`` CLI spells it (``--search-attribute HeraldStatus=Keyword``).
SEARCH_ATTRIBUTE_TYPES: dict[str, str] = {
    key.name: _CLI_TYPE_NAMES[key.indexed_value_type] for key in KEYS
}


def at_start(notification: NotificationInput) -> TypedSearchAttributes:
    """The attributes a notification's workflow starts with: what it is, not yet a status.

    A clean send never gets ``HeraldStatus``: it is sent in its first workflow task,
    and the run's own state (Running, Completed) says all there is. The workflow sets the
    status (with ``HeraldAttempts`` and ``HeraldStatusSince``) at its first transition
    that lasts beyond that task (scheduled, retrying, suppressed, failed, ...) and keeps it
    current to the end, so every notification that is not a clean send is found by it.
    """
    return TypedSearchAttributes(
        [
            SearchAttributePair(CHANNEL, notification.channel.value),
            SearchAttributePair(TEMPLATE, notification.template),
            SearchAttributePair(TENANT, notification.tenant),
            SearchAttributePair(RECIPIENT, notification.user_id),
        ]
    )


def on_transition(
    status: Status, attempts: int, status_since: datetime | None
) -> list[SearchAttributeUpdate[Any]]:
    """The upserts for a transition; ``status_since`` only when the status itself changed."""
    updates: list[SearchAttributeUpdate[Any]] = [
        STATUS.value_set(status.value),
        ATTEMPTS.value_set(attempts),
    ]
    if status_since is not None:
        updates.append(STATUS_SINCE.value_set(status_since))
    return updates


def summary(notification: NotificationInput) -> str:
    """The one-line summary the Temporal UI shows for the workflow (no PII)."""
    cycle = f", resend {notification.cycle - 1}" if notification.cycle > 1 else ""
    return (
        f"{notification.channel.value} · template {notification.template}"
        f" · tenant {notification.tenant}{cycle}"
    )


def details(notification: NotificationInput) -> str:
    """Markdown the Temporal UI shows under the summary: ids an operator searches by."""
    lines = [
        f"**notification** `{notification.notification_id}`",
        f"**tenant** {notification.tenant} · **user** `{notification.user_id}`",
        f"**request id** `{notification.request_id or '-'}`",
    ]
    return "\n\n".join(lines)


async def register(client: Client, namespace: str) -> list[str]:
    """Register Herald's search attributes on a cluster; return the names it added.

    Idempotent: attributes already there with the right type are left alone; one there
    with another type is an error an operator must resolve by hand.
    """
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    registered = dict(existing.custom_attributes)
    missing: dict[str, IndexedValueType.ValueType] = {}
    for key in KEYS:
        wanted = IndexedValueType.ValueType(int(key.indexed_value_type))
        if key.name not in registered:
            missing[key.name] = wanted
        elif registered[key.name] != wanted:
            have = IndexedValueType.Name(registered[key.name])
            raise RuntimeError(
                f"search attribute {key.name} exists as {have}, Herald needs "
                f"{IndexedValueType.Name(wanted)}"
            )
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    return sorted(missing)


async def setup_cluster(settings: Settings) -> list[str]:
    """Register the attributes on the namespace ``settings`` name (``herald temporal setup``)."""
    return await register(await connect(settings), settings.temporal_namespace)
