"""Pydantic models that cross process boundaries: REST bodies, AMQP messages,
workflow and activity inputs and outputs.

Every field added later gets a default, so running workflows keep decoding.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

# ``\A``/``\Z``, not ``^``/``$``: ``$`` also matches before a trailing newline, so
# ``"+15550100123\n"`` would pass ``E164.match``. (The ``pattern=`` fields below are checked
# by pydantic's Rust regex engine, whose ``$`` is the end of the text.)
E164 = re.compile(r"\A\+[1-9]\d{6,14}\Z")


class Channel(StrEnum):
    """The ways Herald can reach a user."""

    email = "email"
    sms = "sms"
    push = "push"
    # Slack, Teams or Discord: the user's ``chat`` address (herald/chat.py).
    chat = "chat"
    # Stored in the user's in-app inbox (``herald/inbox/``); needs no address.
    inapp = "inapp"


class Status(StrEnum):
    """Where a notification is in its lifecycle (the README's "Status lifecycle")."""

    accepted = "accepted"
    scheduled = "scheduled"
    sending = "sending"
    retrying = "retrying"
    sent = "sent"
    delivered = "delivered"
    undelivered = "undelivered"
    failed = "failed"
    cancelled = "cancelled"
    suppressed = "suppressed"

    @property
    def terminal(self) -> bool:
        """True once nothing more will happen without a resend."""
        return self in TERMINAL_STATUSES


class Engagement(StrEnum):
    """What a user did with an in-app message: logged as the notification's events (they
    do not move its status) and offered to webhooks as ``notification.<name>``."""

    seen = "seen"
    read = "read"
    archived = "archived"


TERMINAL_STATUSES = frozenset(
    {
        Status.sent,
        Status.delivered,
        Status.undelivered,
        Status.failed,
        Status.cancelled,
        Status.suppressed,
    }
)


def _text(value: str) -> str:
    """Refuse text PostgreSQL cannot store, at the edge (``herald.dataerrors`` is the net)."""
    if "\x00" in value:
        raise ValueError("may not contain the NUL character (\\u0000)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid UTF-8 (no lone surrogates)") from None
    return value


# Every free-text field of a request body, query or queued message: no NUL, valid UTF-8.
Text = Annotated[str, AfterValidator(_text)]


def _json_text(value: dict[str, Any]) -> dict[str, Any]:
    if has_nul(value):
        raise ValueError("may not contain the NUL character (\\u0000) or invalid UTF-8")
    return value


# A request's ``data``: any JSON object whose keys and strings are all ``Text``.
JsonText = Annotated[dict[str, Any], AfterValidator(_json_text)]

UserId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")]
TemplateKey = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")]
Locale = Annotated[
    str, Field(min_length=2, max_length=35, pattern=r"^[A-Za-z]{2,8}([-_][A-Za-z0-9]{1,8})*$")
]


CategoryName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
# Templates are transactional unless they say otherwise; transactional messages (a
# password reset, a receipt) cannot be opted out of and carry no unsubscribe link.
TRANSACTIONAL = "transactional"
# At most this many requests become one digest, whatever ``max_items`` asks (each
# request's data stays in PostgreSQL; Temporal carries only the ids).
DIGEST_ITEMS_LIMIT = 1000
_CLOCK = re.compile(r"\A([01]\d|2[0-3]):[0-5]\d\Z")


class Priority(StrEnum):
    """``urgent`` skips quiet hours and digests."""

    normal = "normal"
    urgent = "urgent"


class DigestSpec(BaseModel):
    """``digest``: collect this user's requests with the same channel, template and key
    into one notification, sent when the window closes or ``max_items`` is reached."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@/-]+$")
    window_seconds: int = Field(ge=1, le=7 * 24 * 3600)
    max_items: int | None = Field(default=None, ge=1, le=DIGEST_ITEMS_LIMIT)


class QuietHours(BaseModel):
    """A daily window, in the user's timezone, in which nothing but urgent is sent.

    ``start`` after ``end`` crosses midnight (``22:00``-``08:00``); equal means none.
    """

    model_config = ConfigDict(extra="forbid")

    start: str = Field(examples=["22:00"])
    end: str = Field(examples=["08:00"])

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not _CLOCK.match(value):
            raise ValueError("a time of day as HH:MM (24-hour), e.g. 22:00")
        return value


def has_nul(value: Any) -> bool:
    """Whether a JSON value holds a NUL character (or a lone surrogate, not UTF-8)
    anywhere, keys included, which PostgreSQL cannot store."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(key) or has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(has_nul(item) for item in value)
    return False


def storable(value: str | None) -> str | None:
    """``value`` unchanged, or a validation error if PostgreSQL could not store it."""
    if value is not None and has_nul(value):
        raise ValueError("may not contain the NUL character (\\u0000) or invalid UTF-8")
    return value


class NotificationBody(BaseModel):
    """What a client sends to ask for a notification (channel fixed by the route or given)."""

    model_config = ConfigDict(extra="forbid")

    user_id: UserId
    template: TemplateKey
    locale: Locale | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    send_at: datetime | None = Field(
        default=None, description="Deliver no earlier than this time (ISO 8601 with zone)."
    )
    fallback: list[Channel] = Field(
        default_factory=list,
        max_length=2,
        description="Channels to try next, in order, when the user cannot be reached on the "
        "first (no address or device, opted out, or the send failed for good).",
    )
    priority: Priority = Field(
        default=Priority.normal, description="`urgent` skips quiet hours and digests."
    )
    digest: DigestSpec | None = Field(
        default=None,
        description="Join (or open) the digest of this user, channel, template and key.",
    )

    confirm_within_seconds: float | None = Field(
        default=None,
        gt=0,
        le=7 * 24 * 3600,
        description="With a fallback: if the notification is not delivered this long after "
        "it was sent (or turns undelivered), the next fallback channel is tried.",
    )

    @field_validator("confirm_within_seconds")
    @classmethod
    def _confirm_needs_fallback(cls, value: float | None, info: ValidationInfo) -> float | None:
        # ``fallback`` is declared first, so it is in ``info.data`` once it is valid.
        if value is not None and not info.data.get("fallback", [None]):
            raise ValueError(
                "confirm_within_seconds needs a fallback: the channel to try when no "
                "delivery receipt arrives in time"
            )
        return value

    @field_validator("data")
    @classmethod
    def _storable(cls, value: dict[str, Any]) -> dict[str, Any]:
        if has_nul(value):
            raise ValueError("data may not contain the NUL character (\\u0000) or invalid UTF-8")
        return value

    @field_validator("fallback")
    @classmethod
    def _distinct(cls, value: list[Channel]) -> list[Channel]:
        if len(set(value)) != len(value):
            raise ValueError("fallback names a channel twice")
        return value

    @field_validator("send_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("send_at needs a timezone, e.g. 2030-01-01T09:00:00Z")
        return value

    @field_validator("digest")
    @classmethod
    def _digest_alone(cls, value: DigestSpec | None, info: ValidationInfo) -> DigestSpec | None:
        # A digest is sent when its window closes, on its one channel.
        if value is not None and info.data.get("send_at") is not None:
            raise ValueError("a digest is sent when its window closes: it cannot have send_at")
        if value is not None and info.data.get("fallback"):
            raise ValueError("a digest is sent on its own channel: it cannot have a fallback")
        return value


class NotificationRequest(NotificationBody):
    """``POST /v1/notifications``: the body with the channel named."""

    channel: Channel

    @model_validator(mode="after")
    def _fallback_is_other_channels(self) -> NotificationRequest:
        if self.channel in self.fallback:
            raise ValueError(f"fallback repeats the channel {self.channel.value!r}")
        return self

    @property
    def channels(self) -> list[Channel]:
        """Every channel this request may use, in order."""
        return [self.channel, *self.fallback]


class QueuedNotification(NotificationRequest):
    """A RabbitMQ ingest message: the REST body plus the producer's id and, optionally,
    the tenant name (the publishing AMQP user's tenant is the message's; a body naming
    another is dead-lettered)."""

    id: uuid.UUID
    tenant: Text | None = Field(default=None, min_length=1, max_length=128)


class FailedNotification(NotificationRequest):
    """Published to ``herald.failed`` when a send cycle ends ``failed``: the full request
    (``fallback`` included, so a replay may fall back as the first cycle could), whose it
    is, and the last error, for downstream consumers and ``herald dead replay``.

    ``fallback`` defaults to none: messages published before it was carried still decode.
    """

    id: uuid.UUID
    tenant_id: uuid.UUID
    tenant: str = ""
    cycle: int = 1
    attempts: int = 0
    last_error: str
    failed_at: datetime

    @property
    def message_id(self) -> str:
        """One per send cycle: a republished copy (activity retry) carries the same id."""
        return f"{self.id}:{self.cycle}"


class RetrySpec(BaseModel):
    """How the provider call is retried; turned into a Temporal ``RetryPolicy``."""

    max_attempts: int = 3
    initial_interval_seconds: float = 1.0
    backoff_coefficient: float = 2.0
    maximum_interval_seconds: float = 300.0
    send_timeout_seconds: float = 30.0
    # Times a send may be put off by an open circuit breaker without using an attempt.
    max_deferrals: int = 0


class NotificationInput(BaseModel):
    """The input of one ``NotificationWorkflow`` run (one send cycle)."""

    notification_id: uuid.UUID
    tenant_id: uuid.UUID
    tenant: str = ""
    channel: Channel
    user_id: str
    template: str
    locale: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    send_at: datetime | None = None
    created_at: datetime
    cycle: int = 1
    template_version: int | None = None
    retry: RetrySpec = Field(default_factory=RetrySpec)
    request_id: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    task_queue_prefix: str = "herald"
    fallback: list[Channel] = Field(default_factory=list)
    priority: Priority = Priority.normal
    digest: DigestSpec | None = None
    # Made with a test key: every send goes to the test-mode provider, never a real one.
    test: bool = False
    # After ``sent``, how long to wait for a delivery receipt before the next fallback
    # channel is tried (None: do not wait).
    confirm_within_seconds: float | None = None
    # Set when this notification is one recipient of a broadcast.
    broadcast_id: uuid.UUID | None = None

    @property
    def workflow_id(self) -> str:
        """The Temporal workflow id: the notification id, no PII."""
        return workflow_id_for(self.notification_id)


def workflow_id_for(notification_id: uuid.UUID | str) -> str:
    """``notification-<uuid>``: how a notification is found in Temporal."""
    return f"notification-{notification_id}"


class RecipientLookup(BaseModel):
    """Input of ``load_recipient``."""

    tenant_id: uuid.UUID
    user_id: str
    channel: Channel
    # The first lookup of a cycle that sends at once also makes sure the notification's
    # row and ``accepted`` event exist (the same write as ``record_accepted``).
    accepted: NotificationInput | None = None
    # The template being sent, whose category the user may have opted out of. Unset, the
    # lookup finds it through the notification (``notification_id``, ``accepted``, or
    # the workflow the lookup runs for).
    template: str | None = None
    notification_id: uuid.UUID | None = None


class Recipient(BaseModel):
    """Where to send, or why not (``suppressed_reason`` set means do not send)."""

    address: str | None = None
    locale: str | None = None
    suppressed_reason: str | None = None
    # When the user wants nothing but urgent messages (``herald.quiet.quiet_until``).
    quiet_hours: QuietHours | None = None
    timezone: str | None = None
    category: str | None = None


class RenderRequest(BaseModel):
    """Input of ``render_template``."""

    tenant_id: uuid.UUID
    template: str
    channel: Channel
    locale: str | None = None
    version: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    # Whose message it is, for the unsubscribe link of a non-transactional template;
    # unset, the render step finds it through the notification it runs for.
    user_id: str | None = None


class RenderedMessage(BaseModel):
    """A template rendered for one recipient."""

    template_version: int
    locale: str
    subject: str | None = None
    body: str
    # Extra email headers (``List-Unsubscribe`` for non-transactional categories).
    headers: dict[str, str] = Field(default_factory=dict)
    category: str = TRANSACTIONAL


class SendRequest(BaseModel):
    """Input of a provider activity: one message to one address."""

    notification_id: uuid.UUID
    cycle: int = 1
    channel: Channel
    address: str
    message: RenderedMessage
    data: dict[str, Any] = Field(default_factory=dict)
    max_attempts: int = 3
    request_id: str | None = None
    max_deferrals: int = 0
    # Which channel of the fallback order this is (0: the one requested).
    leg: int = 0
    # Set when the workflow's own first try (a local activity) made attempt 1 and it
    # failed transiently: the activity's first Temporal attempt reports that failure
    # (so the pending activity shows it, with its next retry) instead of calling the
    # provider, and Temporal's attempt numbers stay the provider's.
    first_failure: str | None = None
    first_retry_in: float | None = None
    # Workflows since the one-task shape record ``sending`` themselves and need no
    # ``attempt_failed`` signal; runs started before it rely on both (the defaults).
    record_sending: bool = True
    announce_retries: bool = True
    # A test key's notification: answered by the test-mode provider by address.
    test: bool = False
    # ``message.body`` was left out of the history: the send step takes the body its
    # worker's ``prepare`` rendered, or renders this again (its ``data`` is ``data``).
    render: RenderRequest | None = None
    # The notification's tenant (whose integrations send it); unset in sends started
    # before it was carried, which look it up.
    tenant_id: uuid.UUID | None = None
    # What ``prepare`` found this cycle recorded, and when it looked (the first attempt,
    # run locally, sends only if nothing was, and looks again if that is not recent).
    recorded: SendResult | None = None
    checked_at: datetime | None = None

    @property
    def idempotency_key(self) -> str:
        """Stable across every attempt of one send cycle; a resend gets a new one."""
        if self.cycle == 1:
            return str(self.notification_id)
        return f"{self.notification_id}-{self.cycle}"


class SendResult(BaseModel):
    """What the provider said when it accepted the message."""

    provider: str
    provider_message_id: str
    attempt: int = 1
    # True when the send step wrote every event of its attempt (``sending`` and ``sent``).
    recorded: bool = False
    # When the step wrote its last event: the workflow's next events are not older.
    recorded_at: datetime | None = None


def sent_detail(channel: Channel, provider: str) -> str:
    """How the ``sent`` event names the channel and provider that delivered."""
    return f"sent on {channel.value} by {provider}"


class StatusEvent(BaseModel):
    """One transition, written to the append-only event log exactly once."""

    notification_id: uuid.UUID
    status: Status
    at: datetime
    cycle: int = 1
    attempt: int = 0
    provider: str | None = None
    provider_message_id: str | None = None
    template_version: int | None = None
    detail: str | None = None
    error: str | None = None
    # Events that only annotate (e.g. a refused cancel) do not move the current status.
    annotation: bool = False
    # Which channel of the fallback order this happened on (0: the one requested).
    leg: int = 0

    @property
    def key(self) -> str:
        """Unique per notification: a retried write of the same transition is a no-op."""
        base = f"{self.cycle}:{self.status.value}:{self.attempt}"
        if self.leg:
            base += f":leg{self.leg}"
        return f"{base}:note:{self.at.isoformat()}" if self.annotation else base


class AcceptedRecord(BaseModel):
    """Creates the notification row and its ``accepted`` event, idempotently."""

    notification: NotificationInput


class CancelRequest(BaseModel):
    """Signal ``cancel``: stop before the send."""

    reason: str = "cancelled by request"


class ResendRequest(BaseModel):
    """Signal ``resend``: start a new send cycle of a notification that ended."""

    reason: str = "resend requested"


class AttemptFailed(BaseModel):
    """Signal ``attempt_failed``: a provider attempt failed and Temporal will retry it."""

    cycle: int = 1
    leg: int = 0
    attempt: int
    provider: str
    error: str


class NotificationState(BaseModel):
    """Query ``status``: what the workflow knows now."""

    status: Status
    cycle: int
    attempts: int = 0
    last_error: str | None = None
    provider: str | None = None
    # The channel it went out on (differs from the requested one after a fallback).
    channel: Channel | None = None


class PrepareRequest(BaseModel):
    """Input of ``prepare``: the recipient lookup, then the render for that recipient."""

    lookup: RecipientLookup
    render: RenderRequest
    # Set when this worker's own send step follows (the first channel's local attempt):
    # the rendered body waits in this process for it instead of going into the history,
    # and the cycle's recorded acceptance, if any, comes back.
    cycle: int | None = None


class Prepared(BaseModel):
    """Who to send to and what, or why not: ``recipient.suppressed_reason`` means do not
    send, ``render_error`` that the template could not be rendered for them."""

    recipient: Recipient
    message: RenderedMessage | None = None
    render_error: str | None = None
    # The message's body is kept by the worker for its send step (``message.body`` is
    # empty here): the step takes it, or renders the same version and locale again.
    body_kept: bool = False
    # The provider's acceptance of this cycle, already recorded: this step ran again
    # after a crash that came after the send.
    recorded: SendResult | None = None
    # When the lookup read what the cycle had recorded.
    checked_at: datetime | None = None


# --- Digests (``workflows/digest.py``) ---


class DigestItem(BaseModel):
    """Signal ``add``: one request joining its digest, by id, with the small facts the
    digest needs (its ``data`` stays in the request's notification row).

    Runs started before items were sent by id got the whole request in ``notification``;
    such signals still decode and are still taken in.
    """

    notification_id: uuid.UUID | None = None
    locale: str | None = None
    request_id: str | None = None
    notification: NotificationInput | None = None

    @property
    def id(self) -> uuid.UUID:
        """The request's notification id, whichever shape the signal has."""
        if self.notification is not None:
            return self.notification.notification_id
        assert self.notification_id is not None
        return self.notification_id

    @property
    def facts(self) -> DigestItem:
        """This item as an id and its small facts (the shape carried from now on)."""
        if self.notification is None:
            return self
        return DigestItem(
            notification_id=self.notification.notification_id,
            locale=self.notification.locale,
            request_id=self.notification.request_id,
        )


class DigestInput(BaseModel):
    """The input of one ``DigestWorkflow`` run: one digest window of one digest key.

    ``pending`` holds the requests that arrived after the previous window closed; the run
    continued as new hands them to this one.
    """

    tenant_id: uuid.UUID
    tenant: str = ""
    user_id: str
    channel: Channel
    template: str
    key: str
    window_seconds: int
    max_items: int | None = None
    task_queue_prefix: str = "herald"
    pending: list[DigestItem] = Field(default_factory=list)
    # Which digest of this key the run is (1 for the first), for the Temporal UI.
    number: int = 1
    # A test key's digest: only test requests join it, and it is sent as a test one.
    test: bool = False


class DigestClaim(BaseModel):
    """Input of ``claim_digest_items``: make these requests members of this digest."""

    digest_id: uuid.UUID
    workflow_id: str
    tenant_id: uuid.UUID
    user_id: str
    channel: Channel
    template: str
    key: str
    opened_at: datetime
    closes_at: datetime
    # Requests signalled whole (before items were sent by id): their rows are written here.
    items: list[NotificationInput] = Field(default_factory=list)
    # Requests signalled by id: their rows were written by whoever accepted them.
    notification_ids: list[uuid.UUID] = Field(default_factory=list)


class DigestClaimed(BaseModel):
    """The requests that are now members (those already in another digest are not), and
    those whose row is not written yet (their acceptance is still under way)."""

    notification_ids: list[uuid.UUID] = Field(default_factory=list)
    unrecorded: list[uuid.UUID] = Field(default_factory=list)


class DigestClose(BaseModel):
    """Input of ``send_digest``: the one notification a closed digest becomes."""

    digest_id: uuid.UUID
    notification_id: uuid.UUID
    tenant_id: uuid.UUID
    tenant: str = ""
    user_id: str
    channel: Channel
    template: str
    locale: str | None = None
    # Each member's ``data``, oldest first, from runs that carried it; runs since send
    # none and the template reads the members' data from PostgreSQL.
    items: list[dict[str, Any]] = Field(default_factory=list)
    # The members' notification ids, oldest first.
    item_ids: list[uuid.UUID]
    closed_at: datetime
    waited_until: datetime | None = None
    request_id: str | None = None
    test: bool = False


class DigestOutcome(BaseModel):
    """What one digest run did."""

    digest_id: uuid.UUID
    count: int
    notification_id: uuid.UUID | None = None
    carried_over: int = 0


class DigestState(BaseModel):
    """Query ``status`` of a digest run."""

    digest_id: uuid.UUID
    members: int
    pending: int
    closes_at: datetime | None = None
    closed: bool = False
    waiting_until: datetime | None = None


class ReceiptSignal(BaseModel):
    """Signal ``receipt``: the provider (or the client's app) reported what became of a
    message that was sent in ``cycle``; ``status`` is ``delivered`` or ``undelivered``."""

    cycle: int
    status: Status
    reason: str | None = None
    at: datetime


RECEIPT_SIGNAL = "receipt"


class Receipt(BaseModel):
    """A delivery receipt as it is written to the status log.

    ``status`` is ``delivered`` or ``undelivered``, or None for a report that is only
    logged (a Twilio ``queued``/``sent`` callback, a temporary email delay). ``source``
    and ``report`` name who said what (``twilio``/``undelivered``, ``bounce``/``5.1.1``):
    together with the cycle they key the event, so the same report twice is logged once.
    """

    status: Status | None
    source: str
    report: str
    at: datetime
    detail: str | None = None
    # The reason kept in ``last_error`` when the receipt makes a notification undelivered.
    error: str | None = None

    @property
    def report_key(self) -> str:
        """Who said what, e.g. ``twilio:delivered``: with the cycle, the event's key."""
        return f"{self.source}:{self.report}"[:64]

    @property
    def key_suffix(self) -> str:
        """The event key after the cycle: one event per cycle, source and report."""
        return f":receipt:{self.report_key}"


# Broadcasts: one message to an audience, fanned out by ``BroadcastWorkflow``
# (``herald/broadcasts.py`` starts it and reads its audience).


# Most user ids one broadcast (``audience.user_ids``) or one subscribe call may name.
MAX_USER_IDS = 10_000


TopicKey = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]


class BroadcastStatus(StrEnum):
    """Where a broadcast is: still starting recipients, or done with that."""

    running = "running"
    completed = "completed"
    cancelled = "cancelled"


class Audience(BaseModel):
    """Who a broadcast reaches: exactly one of a topic's subscribers, a list of user ids,
    or every user of the tenant."""

    model_config = ConfigDict(extra="forbid")

    topic: TopicKey | None = None
    user_ids: list[UserId] | None = Field(default=None, min_length=1, max_length=MAX_USER_IDS)
    all_users: bool | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Audience:
        given = [self.topic is not None, self.user_ids is not None, bool(self.all_users)]
        if sum(given) != 1:
            raise ValueError(
                'name exactly one audience: {"topic": key}, {"user_ids": [...]} '
                'or {"all_users": true}'
            )
        return self


def broadcast_workflow_id(broadcast_id: uuid.UUID | str) -> str:
    """``broadcast-<uuid>``: how a broadcast is found in Temporal."""
    return f"broadcast-{broadcast_id}"


def recipient_notification_id(broadcast_id: uuid.UUID, user_id: str) -> uuid.UUID:
    """The notification one recipient of a broadcast gets: the same every time it is
    derived, so a fan-out page retried after a crash starts nobody twice."""
    return uuid.uuid5(broadcast_id, user_id)


class BroadcastDefinition(BaseModel):
    """What a broadcast sends and to whom: its row in ``broadcasts``."""

    broadcast_id: uuid.UUID
    tenant_id: uuid.UUID
    channel: Channel
    template: str
    locale: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    fallback: list[Channel] = Field(default_factory=list)
    audience: Audience
    send_at: datetime | None = None
    rate_per_second: float
    total: int
    request_hash: str | None = None
    created_at: datetime
    # Made with a test key: every recipient's notification is a test notification.
    test: bool = False


class BroadcastInput(BaseModel):
    """The input of one ``BroadcastWorkflow`` run: one page of the fan-out.

    Each run starts one page of recipients and continues as new with the cursor moved on,
    so no history ever holds more than one page. Only the first run carries the
    ``definition``, to write the broadcast's row as its first step; later runs read it.
    """

    broadcast_id: uuid.UUID
    tenant_id: uuid.UUID
    tenant: str = ""
    channel: Channel
    template: str
    send_at: datetime | None = None
    rate_per_second: float = 50.0
    page_size: int = 200
    request_id: str | None = None
    # Keyset cursor: the last user id started (user ids are never empty).
    after: str = ""
    started: int = 0
    definition: BroadcastDefinition | None = None

    @property
    def workflow_id(self) -> str:
        """The Temporal workflow id."""
        return broadcast_workflow_id(self.broadcast_id)


class FanOutPage(BaseModel):
    """Input of ``fan_out_page``: start the next ``limit`` recipients after ``after``."""

    broadcast_id: uuid.UUID
    tenant_id: uuid.UUID
    tenant: str = ""
    after: str = ""
    limit: int
    request_id: str | None = None
    # Spread the page's starts evenly at this rate (0: as fast as they go).
    per_second: float = 0.0


class FanOutResult(BaseModel):
    """What one page did. ``started`` counts every recipient of the page, whether this
    attempt started them or an earlier one had (``new`` are the former)."""

    last_user_id: str
    started: int = 0
    new: int = 0
    exhausted: bool = False
    # The broadcast's cancel was asked for (seen in PostgreSQL): nothing was started.
    cancelled: bool = False


class BroadcastEnd(BaseModel):
    """Input of ``end_broadcast``: the broadcast has started everyone it will."""

    broadcast_id: uuid.UUID
    status: BroadcastStatus
    started: int


class BroadcastCancel(BaseModel):
    """Signal ``cancel``: start no more recipients."""

    reason: str = "cancelled by request"


class BroadcastState(BaseModel):
    """The workflow's result."""

    status: BroadcastStatus
    started: int
