"""The in-app channel's provider: stores the rendered message in the user's inbox.

The template's subject is the message's title and its body the body; ``action_url``
comes from the notification's data (an ``http(s)`` URL or a path). The message is stored
once per notification (``inbox_messages.notification_id`` is unique), so a retried step
never stores it twice; it is ``sent`` once stored and ``delivered`` when the user's
inbox first shows it (``herald/inbox/engagement.py``). A test key's message is stored
with ``test`` set: only a user token issued by a test key shows it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.providers.base import Delivery, Provider, ProviderError
from activities.providers.failover import ProviderChain, Route
from herald.breaker import CircuitBreaker
from herald.contracts import SendRequest
from herald.inbox import store

NAME = "inbox"
MAX_ACTION_URL = 2048

_OWNER = text("SELECT tenant_id, user_id FROM notifications WHERE id = :id")


def action_url(data: dict[str, Any]) -> str | None:
    """The message's link, if the data names a usable one."""
    value = data.get("action_url")
    if not isinstance(value, str) or not value or len(value) > MAX_ACTION_URL or "\x00" in value:
        return None
    lowered = value.lower()
    if lowered.startswith(("https://", "http://")) or (
        value.startswith("/") and not value.startswith("//")
    ):
        return value
    return None


class InboxProvider(Provider):
    """Writes the message to ``inbox_messages`` (and its ``message.created`` event)."""

    name = NAME

    def __init__(self, engine: AsyncEngine | None) -> None:
        self._engine = engine

    async def deliver(self, request: SendRequest) -> str:
        """Store the message once; its id in the inbox is the provider's message id."""
        if self._engine is None:
            raise ProviderError("inbox: no database", permanent=False, provider=NAME)
        try:
            async with self._engine.begin() as conn:
                owner = (await conn.execute(_OWNER, {"id": request.notification_id})).first()
                if owner is None:
                    raise ProviderError(
                        f"inbox: notification {request.notification_id} not found",
                        permanent=True,
                        provider=NAME,
                    )
                message_id, _ = await store.create_message(
                    conn,
                    tenant=owner.tenant_id,
                    user_id=owner.user_id,
                    notification_id=request.notification_id,
                    title=request.message.subject or "",
                    body=request.message.body,
                    action_url=action_url(request.data),
                    category=request.message.category,
                    test=request.test,
                )
        except (DataError, IntegrityError) as err:  # this message can never be stored
            raise ProviderError(f"inbox: {err.orig}", permanent=True, provider=NAME) from err
        except DBAPIError as err:  # PostgreSQL unreachable or restarting: try again
            raise ProviderError(f"inbox: {err.orig}", permanent=False, provider=NAME) from err
        return str(message_id)


class InboxChain(ProviderChain):
    """The in-app channel has one provider, and a test key's message is stored too
    (marked ``test``), so it does not go to the test-mode provider."""

    def __init__(self, engine: AsyncEngine | None) -> None:
        self._inbox = InboxProvider(engine)
        super().__init__([Route(provider=self._inbox, breaker=CircuitBreaker(NAME))])

    async def deliver_via(self, request: SendRequest) -> Delivery:
        """Store the message (test or not)."""
        try:
            message_id = await self._inbox.deliver(request)
        except (TimeoutError, OSError) as err:
            raise ProviderError(
                f"{type(err).__name__}: {err}", permanent=False, provider=NAME
            ) from err
        return Delivery(provider=NAME, message_id=message_id)
