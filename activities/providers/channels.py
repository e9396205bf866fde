"""The provider activities, each registered on its channel's task queue."""

from __future__ import annotations

from temporalio import activity

from activities.providers.base import ProviderActivity
from herald.contracts import SendRequest, SendResult


class EmailActivities(ProviderActivity):
    """Runs on the ``email`` queue."""

    @activity.defn(name="send_email")
    async def send_email(self, request: SendRequest) -> SendResult:
        """Send one email."""
        return await self.send(request)


class SmsActivities(ProviderActivity):
    """Runs on the ``sms`` queue."""

    @activity.defn(name="send_sms")
    async def send_sms(self, request: SendRequest) -> SendResult:
        """Send one SMS."""
        return await self.send(request)


class ChatActivities(ProviderActivity):
    """Runs on the ``chat`` queue."""

    @activity.defn(name="send_chat")
    async def send_chat(self, request: SendRequest) -> SendResult:
        """Send one chat message (Slack, Teams or Discord)."""
        return await self.send(request)


class PushActivities(ProviderActivity):
    """Runs on the ``push`` queue."""

    @activity.defn(name="send_push")
    async def send_push(self, request: SendRequest) -> SendResult:
        """Send one push notification."""
        return await self.send(request)


class InappActivities(ProviderActivity):
    """Runs on the ``inapp`` queue."""

    @activity.defn(name="send_inapp")
    async def send_inapp(self, request: SendRequest) -> SendResult:
        """Store one in-app message."""
        return await self.send(request)
