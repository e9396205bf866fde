"""A retried send whose predecessor's acceptance is already recorded does not call the
provider again: the worker that sent it died after recording ``sent`` and before Temporal
heard, and a second physical copy would be Herald's duplicate."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from temporalio.testing import ActivityEnvironment

from activities.providers.channels import EmailActivities
from activities.providers.failover import channel_providers
from devtools.sinks import Sinks
from herald import statuslog, submission
from herald.contracts import (
    Channel,
    NotificationRequest,
    RenderedMessage,
    SendRequest,
    SendResult,
    Status,
    StatusEvent,
)
from herald.db import make_engine
from herald.settings import Settings
from herald.tenants import ensure_tenant


@pytest.fixture
async def email_activities(settings: Settings) -> AsyncIterator[EmailActivities]:
    """The email worker's send activity against the session's database and SMTP sink."""
    engine = make_engine(settings, pool_size=2)
    async with httpx.AsyncClient() as http:
        provider = channel_providers(Channel.email, settings, http)
        yield EmailActivities(provider, engine)
        await provider.close()
    await engine.dispose()


async def _send_request(activities: EmailActivities, settings: Settings) -> SendRequest:
    """A notification accepted in the log, and the send request of its first cycle."""
    engine = activities._engine
    assert engine is not None
    tenant = await ensure_tenant(engine, f"acceptance-{uuid.uuid4().hex[:8]}")
    notification = submission.build_input(
        settings,
        notification_id=uuid.uuid4(),
        tenant_id=tenant.id,
        tenant=tenant.name,
        request=NotificationRequest(channel=Channel.email, user_id="ada", template="welcome"),
    )
    await statuslog.record_accepted(engine, notification)
    return SendRequest(
        notification_id=notification.notification_id,
        channel=Channel.email,
        address=f"ada-{uuid.uuid4().hex[:8]}@example.com",
        message=RenderedMessage(template_version=1, locale="en", subject="Hi", body="<p>Hi</p>"),
    )


def _retry() -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=2)
    return env


async def test_a_retry_after_a_recorded_acceptance_sends_no_second_copy(
    email_activities: EmailActivities, settings: Settings, sinks: Sinks
) -> None:
    request = await _send_request(email_activities, settings)
    engine = email_activities._engine
    assert engine is not None
    # What the first attempt recorded before its worker was killed.
    await statuslog.record_event(
        engine,
        StatusEvent(
            notification_id=request.notification_id,
            status=Status.sent,
            attempt=1,
            at=datetime.now(UTC),
            provider="smtp",
            provider_message_id="<first@herald>",
        ),
    )

    result: SendResult = await _retry().run(email_activities.send_email, request)

    assert (result.provider, result.provider_message_id, result.attempt) == (
        "smtp",
        "<first@herald>",
        1,
    )
    assert sinks.state.received("email", to=request.address) == []
    assert sinks.state.attempts.get(request.address, 0) == 0


async def test_a_retry_with_nothing_recorded_calls_the_provider(
    email_activities: EmailActivities, settings: Settings, sinks: Sinks
) -> None:
    request = await _send_request(email_activities, settings)

    result: SendResult = await _retry().run(email_activities.send_email, request)

    assert result.provider == "smtp" and result.attempt == 2
    (email,) = sinks.state.received("email", to=request.address)
    assert email.message_id == f"<{request.notification_id}@localhost>"
