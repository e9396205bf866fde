"""A retried send whose predecessor's acceptance is already recorded does not call the
provider again: the worker that sent it died after recording ``sent`` and before Temporal
heard, and a second physical copy would be Herald's duplicate."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import ActivityEnvironment

from activities.prepare import PrepareActivities
from activities.providers.channels import EmailActivities
from activities.providers.failover import channel_providers
from activities.templates import TemplateActivities
from devtools.sinks import Sinks
from herald import statuslog, submission
from herald.contracts import (
    Channel,
    NotificationRequest,
    Prepared,
    PrepareRequest,
    RecipientLookup,
    RenderedMessage,
    RenderRequest,
    SendRequest,
    SendResult,
    Status,
    StatusEvent,
)
from herald.db import Notification, NotificationEvent, Template, make_engine
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


async def _accepted(
    activities: EmailActivities, settings: Settings
) -> tuple[SendRequest, AsyncEngine]:
    """``_send_request``, with the database it was accepted in."""
    engine = activities._engine
    assert engine is not None
    return await _send_request(activities, settings), engine


def _retry() -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=2)
    return env


async def test_a_retry_after_a_recorded_acceptance_sends_no_second_copy(
    email_activities: EmailActivities, settings: Settings, sinks: Sinks
) -> None:
    request, engine = await _accepted(email_activities, settings)
    # What the first attempt recorded before its worker was killed.
    await statuslog.record_event(engine, _recorded_sent(request))

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


def _recorded_sent(request: SendRequest) -> StatusEvent:
    return StatusEvent(
        notification_id=request.notification_id,
        status=Status.sent,
        attempt=1,
        at=datetime.now(UTC),
        provider="smtp",
        provider_message_id="<first@herald>",
    )


async def test_a_first_attempt_told_by_prepare_that_the_cycle_was_sent_sends_nothing(
    email_activities: EmailActivities, settings: Settings, sinks: Sinks
) -> None:
    request = await _send_request(email_activities, settings)
    told = SendResult(provider="smtp", provider_message_id="<first@herald>", recorded=True)
    fresh = request.model_copy(update={"recorded": told, "checked_at": datetime.now(UTC)})

    result: SendResult = await ActivityEnvironment().run(email_activities.send_email, fresh)

    assert result == told
    assert sinks.state.attempts.get(request.address, 0) == 0


async def test_a_first_attempt_whose_check_is_old_looks_again_and_sends_nothing(
    email_activities: EmailActivities, settings: Settings, sinks: Sinks
) -> None:
    """The workflow task ran again after a crash: ``prepare``'s answer (from before the
    crash, replayed from the history) is old, and the acceptance was logged since."""
    request, engine = await _accepted(email_activities, settings)
    await statuslog.record_event(engine, _recorded_sent(request))
    old = request.model_copy(update={"checked_at": datetime.now(UTC) - timedelta(seconds=30)})

    result: SendResult = await ActivityEnvironment().run(email_activities.send_email, old)

    assert (result.provider_message_id, result.recorded) == ("<first@herald>", True)
    assert sinks.state.attempts.get(request.address, 0) == 0


async def test_a_first_attempt_logs_sending_then_sent_in_order(
    email_activities: EmailActivities, settings: Settings, sinks: Sinks
) -> None:
    request, engine = await _accepted(email_activities, settings)
    fresh = request.model_copy(update={"checked_at": datetime.now(UTC)})

    result: SendResult = await ActivityEnvironment().run(email_activities.send_email, fresh)

    assert result.recorded and result.attempt == 1
    async with engine.connect() as conn:
        logged = (
            await conn.execute(
                select(NotificationEvent.status, NotificationEvent.at)
                .where(NotificationEvent.notification_id == request.notification_id)
                .order_by(NotificationEvent.id)
            )
        ).all()
        status = await conn.scalar(
            select(Notification.status).where(Notification.id == request.notification_id)
        )
    assert [row.status for row in logged] == ["accepted", "sending", "sent"]
    assert logged[1].at <= logged[2].at
    assert status == "sent"
    assert len(sinks.state.received("email", to=request.address)) == 1


async def test_a_body_left_out_of_the_history_is_rendered_again_by_the_send_step(
    settings: Settings, sinks: Sinks
) -> None:
    """No ``prepare`` of this process kept it (a retry, another worker): the send step
    renders the same version and locale again, with the notification's data."""
    engine = make_engine(settings, pool_size=2)
    templates = TemplateActivities(engine, settings)
    async with httpx.AsyncClient() as http:
        provider = channel_providers(Channel.email, settings, http)
        activities = EmailActivities(provider, engine, templates=templates)
        request = await _send_request(activities, settings)
        tenant_id = await engine_tenant(engine, request)
        async with engine.begin() as conn:
            await conn.execute(
                insert(Template).values(
                    tenant_id=tenant_id,
                    key="receipt",
                    channel="email",
                    locale="en",
                    version=3,
                    subject="Receipt",
                    body="<p>Order {{ n }} for {{ name }}</p>",
                )
            )
        left_out = request.model_copy(
            update={
                "message": RenderedMessage(
                    template_version=3, locale="en", subject="Receipt", body=""
                ),
                "data": {"n": 42, "name": "Ada"},
                "render": RenderRequest(
                    tenant_id=tenant_id, template="receipt", channel=Channel.email, user_id="ada"
                ),
                "checked_at": datetime.now(UTC),
            }
        )
        await ActivityEnvironment().run(activities.send_email, left_out)
        await provider.close()
    await engine.dispose()
    (email,) = sinks.state.received("email", to=request.address)
    assert "Order 42 for Ada" in email.body


async def engine_tenant(engine: AsyncEngine, request: SendRequest) -> uuid.UUID:
    """The tenant of the request's notification."""
    async with engine.connect() as conn:
        tenant_id = await conn.scalar(
            select(Notification.tenant_id).where(Notification.id == request.notification_id)
        )
    assert tenant_id is not None
    return tenant_id


async def test_prepare_reads_the_cycles_recorded_acceptance_in_its_one_statement(
    email_activities: EmailActivities, settings: Settings
) -> None:
    request, engine = await _accepted(email_activities, settings)
    tenant_id = await engine_tenant(engine, request)
    prepare = PrepareActivities(engine, TemplateActivities(engine, settings))
    asked = PrepareRequest(
        lookup=RecipientLookup(
            tenant_id=tenant_id,
            user_id="ada",
            channel=Channel.email,
            template="welcome",
            notification_id=request.notification_id,
        ),
        render=RenderRequest(tenant_id=tenant_id, template="welcome", channel=Channel.email),
        cycle=1,
    )
    before: Prepared = await ActivityEnvironment().run(prepare.prepare, asked)
    assert before.recorded is None and before.checked_at is not None

    await statuslog.record_event(engine, _recorded_sent(request))
    after: Prepared = await ActivityEnvironment().run(prepare.prepare, asked)

    assert after.recorded is not None
    assert (after.recorded.provider_message_id, after.recorded.recorded) == ("<first@herald>", True)
    # Another cycle's (or a fallback's) prepare does not take it for its own.
    other = await ActivityEnvironment().run(prepare.prepare, asked.model_copy(update={"cycle": 2}))
    assert other.recorded is None
