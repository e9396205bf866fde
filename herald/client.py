"""A Python client for Herald's REST API, sync (``HeraldClient``) and async
(``AsyncHeraldClient``), on httpx, typed with the API's own pydantic models.

Every submission (a notification, a batch item, a flow trigger) carries an idempotency
key: the caller's, or one generated here. A ``429`` or ``503`` is retried after the
``Retry-After`` the API sent, with the same key, so a retry never sends twice. Any other
error raises ``HeraldError`` (or a subclass by status) with the API's error body.

The models come from ``api.schemas``, which imports no FastAPI, routes, services or
database code, so a client process loads none of the server.

    with HeraldClient("http://localhost:8000", api_key=KEY) as herald:
        accepted = herald.send({"channel": "email", "user_id": "ada", "template": "welcome",
                                "data": {"name": "Ada"}})
        print(herald.get_notification(accepted.id).status)
"""

from __future__ import annotations

import asyncio
import email.utils
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
)

from api.schemas.broadcasts import BroadcastAccepted, BroadcastIn, BroadcastOut
from api.schemas.flows import (
    CancelRunsOut,
    FlowOut,
    FlowRunOut,
    FlowRunPage,
    TriggerAccepted,
    TriggerIn,
)
from api.schemas.notifications import (
    BatchOut,
    EventOut,
    NotificationAccepted,
    NotificationOut,
    NotificationPage,
)
from api.schemas.templates import TemplateIn, TemplateOut, TemplateVersions
from api.schemas.topics import SubscribersAdded, TopicOut
from api.schemas.users import DeviceIn, DeviceList, DeviceOut, UserCreate, UserFields, UserOut
from herald.contracts import NotificationRequest

__all__ = [
    "AsyncHeraldClient",
    "Conflict",
    "Forbidden",
    "HeraldClient",
    "HeraldError",
    "InboxToken",
    "NotFound",
    "RateLimited",
    "RetryPolicy",
    "Unauthorized",
    "Unavailable",
    "ValidationFailed",
]

T = TypeVar("T")
Body = BaseModel | Mapping[str, Any]
Submission = NotificationRequest | Mapping[str, Any]
IDEMPOTENCY_HEADER = "Idempotency-Key"


# --- errors -------------------------------------------------------------------------


class HeraldError(Exception):
    """An error answer of the API: its status, the JSON body (or text) and, for a
    ``429``/``503``, the ``Retry-After`` it asked for (seconds)."""

    def __init__(
        self, status: int, body: Any, *, method: str, url: str, retry_after: float | None = None
    ) -> None:
        self.status = status
        self.body = body
        self.retry_after = retry_after
        self.method = method
        self.url = url
        super().__init__(f"{method} {url} answered {status}: {self.detail}")

    @property
    def detail(self) -> Any:
        """The body's ``detail`` (FastAPI's error shape), or the whole body."""
        if isinstance(self.body, dict) and "detail" in self.body:
            return self.body["detail"]
        return self.body


class Unauthorized(HeraldError):
    """``401``: no key, or one that is unknown or revoked."""


class Forbidden(HeraldError):
    """``403``: the key lacks the scope, or a test key tried to change something."""


class NotFound(HeraldError):
    """``404``: no such resource in the key's tenant."""


class Conflict(HeraldError):
    """``409``: e.g. an idempotency key reused with another body, or cancelling a
    notification that already ended."""


class ValidationFailed(HeraldError):
    """``422``: the request is invalid; ``fields`` names what is wrong."""

    @property
    def fields(self) -> list[str]:
        """Each invalid field's location, dotted, without the leading ``body``/``query``
        (``notifications.1.user_id``); a message without a location as it is."""
        found: list[str] = []
        detail = self.detail
        for error in detail if isinstance(detail, list) else [detail]:
            loc = error.get("loc") if isinstance(error, dict) else None
            if loc:
                parts = loc[1:] if loc[0] in ("body", "query", "path", "header") else loc
                found.append(".".join(str(part) for part in parts))
            else:
                found.append(str(error.get("msg", error) if isinstance(error, dict) else error))
        return found


class RateLimited(HeraldError):
    """``429``: over the tenant's rate limit (retried by the client first)."""


class Unavailable(HeraldError):
    """``503``: the API could not accept it now (retried by the client first)."""


_ERRORS: dict[int, type[HeraldError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: ValidationFailed,
    429: RateLimited,
    503: Unavailable,
}


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error(response: httpx.Response) -> HeraldError:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    kind = _ERRORS.get(response.status_code, HeraldError)
    return kind(
        response.status_code,
        body,
        method=response.request.method,
        url=str(response.request.url),
        retry_after=retry_after_seconds(response.headers.get("Retry-After")),
    )


# --- retries ------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How ``429``/``503`` answers are retried: at most ``attempts`` tries in all,
    waiting what ``Retry-After`` says (else ``backoff`` doubling from its value), never
    more than ``max_wait`` seconds at once. ``attempts=1`` retries nothing."""

    attempts: int = 4
    backoff: float = 0.5
    max_wait: float = 30.0

    def wait(self, state: RetryCallState) -> float:
        """Seconds before the next try (tenacity's ``wait``)."""
        error = state.outcome.exception() if state.outcome else None
        asked = error.retry_after if isinstance(error, HeraldError) else None
        if asked is None:
            asked = self.backoff * 2 ** (state.attempt_number - 1)
        return min(asked, self.max_wait)

    def tenacity_args(self) -> dict[str, Any]:
        """The arguments of a tenacity ``Retrying``/``AsyncRetrying``."""
        return {
            "retry": retry_if_exception_type((RateLimited, Unavailable)),
            "wait": self.wait,
            "stop": stop_after_attempt(max(1, self.attempts)),
            "reraise": True,
        }


# --- requests, described once for both clients -------------------------------------


@dataclass
class Call(Generic[T]):
    """One API request and how to read its answer. Built once per call, so a retry
    sends exactly the same request (the same idempotency key)."""

    method: str
    path: str
    answer: TypeAdapter[T]
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def build(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        """The request, on ``http``'s base URL and headers; either client sends it."""
        return http.build_request(
            self.method, self.path, json=self.json, params=self.params, headers=self.headers
        )

    def read(self, response: httpx.Response) -> T:
        """The typed answer, or the error the status stands for."""
        if response.status_code >= 400:
            raise _error(response)
        content = None if response.status_code == 204 or not response.content else response.json()
        return self.answer.validate_python(content)


_NONE: TypeAdapter[None] = TypeAdapter(None)
_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _answer(kind: type[T]) -> TypeAdapter[T]:
    if kind not in _ADAPTERS:
        _ADAPTERS[kind] = TypeAdapter(kind)
    return _ADAPTERS[kind]


def _body(value: Body | None) -> Any:
    """A request body as JSON: a model's fields that were set (so a ``PUT`` names only
    what the caller named), or a mapping as it is (the API validates it)."""
    if value is None:
        return None
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True)
    return dict(value)


def _query(**params: Any) -> dict[str, Any]:
    return {
        name: str(value) if isinstance(value, uuid.UUID | datetime) else value
        for name, value in params.items()
        if value is not None
    }


def new_idempotency_key() -> str:
    """A fresh idempotency key for a submission whose caller gave none."""
    return str(uuid.uuid4())


class InboxToken(BaseModel):
    """``POST /v1/inbox/tokens``: a user token for the in-app inbox routes."""

    token: str
    expires_at: datetime


class Calls:
    """Every request the clients make: paths, bodies, idempotency keys, answer types."""

    # Notifications.

    @staticmethod
    def send(request: Submission, idempotency_key: str | None) -> Call[NotificationAccepted]:
        key = idempotency_key or new_idempotency_key()
        return Call(
            "POST",
            "/v1/notifications",
            _answer(NotificationAccepted),
            json=_body(request),
            headers={IDEMPOTENCY_HEADER: key},
        )

    @staticmethod
    def send_batch(items: Iterable[Body]) -> Call[BatchOut]:
        bodies = []
        for item in items:
            body = _body(item)
            body.setdefault("idempotency_key", new_idempotency_key())
            bodies.append(body)
        return Call(
            "POST", "/v1/notifications/batch", _answer(BatchOut), json={"notifications": bodies}
        )

    @staticmethod
    def get_notification(notification_id: uuid.UUID | str) -> Call[NotificationOut]:
        return Call("GET", f"/v1/notifications/{notification_id}", _answer(NotificationOut))

    @staticmethod
    def list_notifications(**filters: Any) -> Call[NotificationPage]:
        return Call("GET", "/v1/notifications", _answer(NotificationPage), params=_query(**filters))

    @staticmethod
    def notification_events(notification_id: uuid.UUID | str) -> Call[list[EventOut]]:
        return Call("GET", f"/v1/notifications/{notification_id}/events", _answer(list[EventOut]))

    @staticmethod
    def cancel_notification(notification_id: uuid.UUID | str) -> Call[NotificationOut]:
        return Call("POST", f"/v1/notifications/{notification_id}/cancel", _answer(NotificationOut))

    @staticmethod
    def resend_notification(notification_id: uuid.UUID | str) -> Call[NotificationOut]:
        return Call("POST", f"/v1/notifications/{notification_id}/resend", _answer(NotificationOut))

    # Templates.

    @staticmethod
    def create_template(template: TemplateIn | Mapping[str, Any]) -> Call[TemplateOut]:
        return Call("POST", "/v1/templates", _answer(TemplateOut), json=_body(template))

    @staticmethod
    def put_template(template: TemplateIn | Mapping[str, Any]) -> Call[TemplateOut]:
        body = _body(template)
        return Call("PUT", f"/v1/templates/{body['key']}", _answer(TemplateOut), json=body)

    @staticmethod
    def get_template(key: str, version: int | None) -> Call[TemplateVersions]:
        return Call(
            "GET", f"/v1/templates/{key}", _answer(TemplateVersions), params=_query(version=version)
        )

    # Users.

    @staticmethod
    def put_user(user_id: str, user: UserFields | Mapping[str, Any]) -> Call[UserOut]:
        return Call("PUT", f"/v1/users/{user_id}", _answer(UserOut), json=_body(user))

    @staticmethod
    def create_user(user: UserCreate | Mapping[str, Any]) -> Call[UserOut]:
        return Call("POST", "/v1/users", _answer(UserOut), json=_body(user))

    @staticmethod
    def get_user(user_id: str) -> Call[UserOut]:
        return Call("GET", f"/v1/users/{user_id}", _answer(UserOut))

    @staticmethod
    def delete_user(user_id: str) -> Call[None]:
        return Call("DELETE", f"/v1/users/{user_id}", _NONE)

    @staticmethod
    def add_device(user_id: str, device: DeviceIn | Mapping[str, Any]) -> Call[DeviceOut]:
        return Call("POST", f"/v1/users/{user_id}/devices", _answer(DeviceOut), json=_body(device))

    @staticmethod
    def list_devices(user_id: str) -> Call[DeviceList]:
        return Call("GET", f"/v1/users/{user_id}/devices", _answer(DeviceList))

    # Topics and broadcasts.

    @staticmethod
    def put_topic(key: str, name: str | None) -> Call[TopicOut]:
        body = {} if name is None else {"name": name}
        return Call("PUT", f"/v1/topics/{key}", _answer(TopicOut), json=body)

    @staticmethod
    def get_topic(key: str) -> Call[TopicOut]:
        return Call("GET", f"/v1/topics/{key}", _answer(TopicOut))

    @staticmethod
    def subscribe(key: str, user_ids: Iterable[str]) -> Call[SubscribersAdded]:
        return Call(
            "POST",
            f"/v1/topics/{key}/subscribers",
            _answer(SubscribersAdded),
            json={"user_ids": list(user_ids)},
        )

    @staticmethod
    def unsubscribe(key: str, user_id: str) -> Call[None]:
        return Call("DELETE", f"/v1/topics/{key}/subscribers/{user_id}", _NONE)

    @staticmethod
    def create_broadcast(broadcast: BroadcastIn | Mapping[str, Any]) -> Call[BroadcastAccepted]:
        return Call("POST", "/v1/broadcasts", _answer(BroadcastAccepted), json=_body(broadcast))

    @staticmethod
    def get_broadcast(broadcast_id: uuid.UUID | str) -> Call[BroadcastOut]:
        return Call("GET", f"/v1/broadcasts/{broadcast_id}", _answer(BroadcastOut))

    @staticmethod
    def cancel_broadcast(broadcast_id: uuid.UUID | str) -> Call[BroadcastOut]:
        return Call("POST", f"/v1/broadcasts/{broadcast_id}/cancel", _answer(BroadcastOut))

    # Flows.

    @staticmethod
    def put_flow(key: str, flow: Mapping[str, Any]) -> Call[FlowOut]:
        return Call("PUT", f"/v1/flows/{key}", _answer(FlowOut), json=dict(flow))

    @staticmethod
    def get_flow(key: str, version: int | None) -> Call[FlowOut]:
        return Call("GET", f"/v1/flows/{key}", _answer(FlowOut), params=_query(version=version))

    @staticmethod
    def trigger_flow(key: str, trigger: TriggerIn | Mapping[str, Any]) -> Call[TriggerAccepted]:
        body = _body(trigger)
        if not body.get("idempotency_key"):
            body["idempotency_key"] = new_idempotency_key()
        return Call("POST", f"/v1/flows/{key}/trigger", _answer(TriggerAccepted), json=body)

    @staticmethod
    def get_run(run_id: uuid.UUID | str) -> Call[FlowRunOut]:
        return Call("GET", f"/v1/flow-runs/{run_id}", _answer(FlowRunOut))

    @staticmethod
    def list_runs(**filters: Any) -> Call[FlowRunPage]:
        return Call("GET", "/v1/flow-runs", _answer(FlowRunPage), params=_query(**filters))

    @staticmethod
    def cancel_runs(cancellation_key: str) -> Call[CancelRunsOut]:
        return Call(
            "POST",
            "/v1/flow-runs/cancel",
            _answer(CancelRunsOut),
            json={"cancellation_key": cancellation_key},
        )

    # In-app inbox.

    @staticmethod
    def issue_inbox_token(user_id: str, ttl_seconds: int | None) -> Call[InboxToken]:
        body: dict[str, Any] = {"user_id": user_id}
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        return Call("POST", "/v1/inbox/tokens", _answer(InboxToken), json=body)


# --- the two clients ----------------------------------------------------------------


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class HeraldClient:
    """Herald's REST API, synchronous. Use as a context manager, or call ``close``."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self.http = httpx.Client(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    def __enter__(self) -> HeraldClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def request(self, call: Call[T]) -> T:
        """Send ``call``, retrying ``429``/``503`` as the policy says."""
        for attempt in Retrying(sleep=self._sleep, **self.retry.tenacity_args()):
            with attempt:
                return call.read(self.http.send(call.build(self.http)))
        raise AssertionError("unreachable")  # tenacity re-raises the last error

    # Notifications.

    def send(
        self,
        request: NotificationRequest | Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> NotificationAccepted:
        """``POST /v1/notifications`` with ``Idempotency-Key`` (generated if not given)."""
        return self.request(Calls.send(request, idempotency_key))

    def send_batch(self, items: Iterable[Body]) -> BatchOut:
        """``POST /v1/notifications/batch``; each item without ``idempotency_key`` gets one."""
        return self.request(Calls.send_batch(items))

    def get_notification(self, notification_id: uuid.UUID | str) -> NotificationOut:
        """``GET /v1/notifications/{id}``."""
        return self.request(Calls.get_notification(notification_id))

    def list_notifications(self, **filters: Any) -> NotificationPage:
        """``GET /v1/notifications`` (``status``, ``channel``, ``user_id``, ``template``,
        ``broadcast_id``, ``limit``, ``cursor``)."""
        return self.request(Calls.list_notifications(**filters))

    def notification_events(self, notification_id: uuid.UUID | str) -> list[EventOut]:
        """``GET /v1/notifications/{id}/events``, oldest first."""
        return self.request(Calls.notification_events(notification_id))

    def cancel_notification(self, notification_id: uuid.UUID | str) -> NotificationOut:
        """``POST /v1/notifications/{id}/cancel`` (``Conflict`` if it already ended)."""
        return self.request(Calls.cancel_notification(notification_id))

    def resend_notification(self, notification_id: uuid.UUID | str) -> NotificationOut:
        """``POST /v1/notifications/{id}/resend``."""
        return self.request(Calls.resend_notification(notification_id))

    # Templates.

    def create_template(self, template: TemplateIn | Mapping[str, Any]) -> TemplateOut:
        """``POST /v1/templates``: version 1 of a new key."""
        return self.request(Calls.create_template(template))

    def put_template(self, template: TemplateIn | Mapping[str, Any]) -> TemplateOut:
        """``PUT /v1/templates/{key}``: a new version of an existing key."""
        return self.request(Calls.put_template(template))

    def get_template(self, key: str, *, version: int | None = None) -> TemplateVersions:
        """``GET /v1/templates/{key}``: the latest version per locale, or one version."""
        return self.request(Calls.get_template(key, version))

    # Users.

    def create_user(self, user: UserCreate | Mapping[str, Any]) -> UserOut:
        """``POST /v1/users``."""
        return self.request(Calls.create_user(user))

    def put_user(self, user_id: str, user: UserFields | Mapping[str, Any]) -> UserOut:
        """``PUT /v1/users/{id}``: replace an existing user's contact fields."""
        return self.request(Calls.put_user(user_id, user))

    def get_user(self, user_id: str) -> UserOut:
        """``GET /v1/users/{id}``."""
        return self.request(Calls.get_user(user_id))

    def delete_user(self, user_id: str) -> None:
        """``DELETE /v1/users/{id}``."""
        return self.request(Calls.delete_user(user_id))

    def add_device(self, user_id: str, device: DeviceIn | Mapping[str, Any]) -> DeviceOut:
        """``POST /v1/users/{id}/devices``: a push token."""
        return self.request(Calls.add_device(user_id, device))

    def list_devices(self, user_id: str) -> DeviceList:
        """``GET /v1/users/{id}/devices``."""
        return self.request(Calls.list_devices(user_id))

    # Topics and broadcasts.

    def put_topic(self, key: str, *, name: str | None = None) -> TopicOut:
        """``PUT /v1/topics/{key}``."""
        return self.request(Calls.put_topic(key, name))

    def get_topic(self, key: str) -> TopicOut:
        """``GET /v1/topics/{key}``, with its subscriber count."""
        return self.request(Calls.get_topic(key))

    def subscribe(self, key: str, user_ids: Iterable[str]) -> SubscribersAdded:
        """``POST /v1/topics/{key}/subscribers``."""
        return self.request(Calls.subscribe(key, user_ids))

    def unsubscribe(self, key: str, user_id: str) -> None:
        """``DELETE /v1/topics/{key}/subscribers/{user_id}``."""
        return self.request(Calls.unsubscribe(key, user_id))

    def create_broadcast(self, broadcast: BroadcastIn | Mapping[str, Any]) -> BroadcastAccepted:
        """``POST /v1/broadcasts``."""
        return self.request(Calls.create_broadcast(broadcast))

    def get_broadcast(self, broadcast_id: uuid.UUID | str) -> BroadcastOut:
        """``GET /v1/broadcasts/{id}``."""
        return self.request(Calls.get_broadcast(broadcast_id))

    def cancel_broadcast(self, broadcast_id: uuid.UUID | str) -> BroadcastOut:
        """``POST /v1/broadcasts/{id}/cancel``."""
        return self.request(Calls.cancel_broadcast(broadcast_id))

    # Flows.

    def put_flow(self, key: str, flow: Mapping[str, Any]) -> FlowOut:
        """``PUT /v1/flows/{key}``: ``{name?, category?, steps}`` as a new version."""
        return self.request(Calls.put_flow(key, flow))

    def get_flow(self, key: str, *, version: int | None = None) -> FlowOut:
        """``GET /v1/flows/{key}``."""
        return self.request(Calls.get_flow(key, version))

    def trigger_flow(self, key: str, trigger: TriggerIn | Mapping[str, Any]) -> TriggerAccepted:
        """``POST /v1/flows/{key}/trigger``; ``idempotency_key`` is generated if not given."""
        return self.request(Calls.trigger_flow(key, trigger))

    def get_run(self, run_id: uuid.UUID | str) -> FlowRunOut:
        """``GET /v1/flow-runs/{id}``."""
        return self.request(Calls.get_run(run_id))

    def list_runs(self, **filters: Any) -> FlowRunPage:
        """``GET /v1/flow-runs`` (``flow``, ``user_id``, ``status``, ``trigger_id``, ``limit``,
        ``cursor``)."""
        return self.request(Calls.list_runs(**filters))

    def cancel_runs(self, cancellation_key: str) -> CancelRunsOut:
        """``POST /v1/flow-runs/cancel``: stop every running run with that key."""
        return self.request(Calls.cancel_runs(cancellation_key))

    # In-app inbox.

    def issue_inbox_token(self, user_id: str, *, ttl_seconds: int | None = None) -> InboxToken:
        """``POST /v1/inbox/tokens``: a short-lived token for one user's inbox."""
        return self.request(Calls.issue_inbox_token(user_id, ttl_seconds))


class AsyncHeraldClient:
    """Herald's REST API, asynchronous; the same operations as ``HeraldClient``."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self.http = httpx.AsyncClient(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncHeraldClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.http.aclose()

    async def request(self, call: Call[T]) -> T:
        """Send ``call``, retrying ``429``/``503`` as the policy says."""
        async for attempt in AsyncRetrying(sleep=self._sleep, **self.retry.tenacity_args()):
            with attempt:
                return call.read(await self.http.send(call.build(self.http)))
        raise AssertionError("unreachable")  # tenacity re-raises the last error

    # Notifications.

    async def send(
        self,
        request: NotificationRequest | Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> NotificationAccepted:
        """``POST /v1/notifications`` with ``Idempotency-Key`` (generated if not given)."""
        return await self.request(Calls.send(request, idempotency_key))

    async def send_batch(self, items: Iterable[Body]) -> BatchOut:
        """``POST /v1/notifications/batch``; each item without ``idempotency_key`` gets one."""
        return await self.request(Calls.send_batch(items))

    async def get_notification(self, notification_id: uuid.UUID | str) -> NotificationOut:
        """``GET /v1/notifications/{id}``."""
        return await self.request(Calls.get_notification(notification_id))

    async def list_notifications(self, **filters: Any) -> NotificationPage:
        """``GET /v1/notifications`` (filters as ``HeraldClient.list_notifications``)."""
        return await self.request(Calls.list_notifications(**filters))

    async def notification_events(self, notification_id: uuid.UUID | str) -> list[EventOut]:
        """``GET /v1/notifications/{id}/events``, oldest first."""
        return await self.request(Calls.notification_events(notification_id))

    async def cancel_notification(self, notification_id: uuid.UUID | str) -> NotificationOut:
        """``POST /v1/notifications/{id}/cancel``."""
        return await self.request(Calls.cancel_notification(notification_id))

    async def resend_notification(self, notification_id: uuid.UUID | str) -> NotificationOut:
        """``POST /v1/notifications/{id}/resend``."""
        return await self.request(Calls.resend_notification(notification_id))

    # Templates.

    async def create_template(self, template: TemplateIn | Mapping[str, Any]) -> TemplateOut:
        """``POST /v1/templates``."""
        return await self.request(Calls.create_template(template))

    async def put_template(self, template: TemplateIn | Mapping[str, Any]) -> TemplateOut:
        """``PUT /v1/templates/{key}``."""
        return await self.request(Calls.put_template(template))

    async def get_template(self, key: str, *, version: int | None = None) -> TemplateVersions:
        """``GET /v1/templates/{key}``."""
        return await self.request(Calls.get_template(key, version))

    # Users.

    async def create_user(self, user: UserCreate | Mapping[str, Any]) -> UserOut:
        """``POST /v1/users``."""
        return await self.request(Calls.create_user(user))

    async def put_user(self, user_id: str, user: UserFields | Mapping[str, Any]) -> UserOut:
        """``PUT /v1/users/{id}``."""
        return await self.request(Calls.put_user(user_id, user))

    async def get_user(self, user_id: str) -> UserOut:
        """``GET /v1/users/{id}``."""
        return await self.request(Calls.get_user(user_id))

    async def delete_user(self, user_id: str) -> None:
        """``DELETE /v1/users/{id}``."""
        return await self.request(Calls.delete_user(user_id))

    async def add_device(self, user_id: str, device: DeviceIn | Mapping[str, Any]) -> DeviceOut:
        """``POST /v1/users/{id}/devices``."""
        return await self.request(Calls.add_device(user_id, device))

    async def list_devices(self, user_id: str) -> DeviceList:
        """``GET /v1/users/{id}/devices``."""
        return await self.request(Calls.list_devices(user_id))

    # Topics and broadcasts.

    async def put_topic(self, key: str, *, name: str | None = None) -> TopicOut:
        """``PUT /v1/topics/{key}``."""
        return await self.request(Calls.put_topic(key, name))

    async def get_topic(self, key: str) -> TopicOut:
        """``GET /v1/topics/{key}``."""
        return await self.request(Calls.get_topic(key))

    async def subscribe(self, key: str, user_ids: Iterable[str]) -> SubscribersAdded:
        """``POST /v1/topics/{key}/subscribers``."""
        return await self.request(Calls.subscribe(key, user_ids))

    async def unsubscribe(self, key: str, user_id: str) -> None:
        """``DELETE /v1/topics/{key}/subscribers/{user_id}``."""
        return await self.request(Calls.unsubscribe(key, user_id))

    async def create_broadcast(
        self, broadcast: BroadcastIn | Mapping[str, Any]
    ) -> BroadcastAccepted:
        """``POST /v1/broadcasts``."""
        return await self.request(Calls.create_broadcast(broadcast))

    async def get_broadcast(self, broadcast_id: uuid.UUID | str) -> BroadcastOut:
        """``GET /v1/broadcasts/{id}``."""
        return await self.request(Calls.get_broadcast(broadcast_id))

    async def cancel_broadcast(self, broadcast_id: uuid.UUID | str) -> BroadcastOut:
        """``POST /v1/broadcasts/{id}/cancel``."""
        return await self.request(Calls.cancel_broadcast(broadcast_id))

    # Flows.

    async def put_flow(self, key: str, flow: Mapping[str, Any]) -> FlowOut:
        """``PUT /v1/flows/{key}``."""
        return await self.request(Calls.put_flow(key, flow))

    async def get_flow(self, key: str, *, version: int | None = None) -> FlowOut:
        """``GET /v1/flows/{key}``."""
        return await self.request(Calls.get_flow(key, version))

    async def trigger_flow(
        self, key: str, trigger: TriggerIn | Mapping[str, Any]
    ) -> TriggerAccepted:
        """``POST /v1/flows/{key}/trigger``; ``idempotency_key`` is generated if not given."""
        return await self.request(Calls.trigger_flow(key, trigger))

    async def get_run(self, run_id: uuid.UUID | str) -> FlowRunOut:
        """``GET /v1/flow-runs/{id}``."""
        return await self.request(Calls.get_run(run_id))

    async def list_runs(self, **filters: Any) -> FlowRunPage:
        """``GET /v1/flow-runs``."""
        return await self.request(Calls.list_runs(**filters))

    async def cancel_runs(self, cancellation_key: str) -> CancelRunsOut:
        """``POST /v1/flow-runs/cancel``."""
        return await self.request(Calls.cancel_runs(cancellation_key))

    # In-app inbox.

    async def issue_inbox_token(
        self, user_id: str, *, ttl_seconds: int | None = None
    ) -> InboxToken:
        """``POST /v1/inbox/tokens``."""
        return await self.request(Calls.issue_inbox_token(user_id, ttl_seconds))
