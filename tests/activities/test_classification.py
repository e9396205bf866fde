"""Which provider failures Herald retries and which end a send at once, as Temporal sees
them: every answer goes through the real provider and its activity, against the local
SMTP server and Twilio/FCM stand-ins (in-process; nothing else runs)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.providers.base import Provider, ProviderActivity, ProviderError
from activities.providers.chat import deployment_providers
from activities.providers.email import SmtpProvider
from activities.providers.failover import ProviderChain, Route
from activities.providers.push import FcmProvider
from activities.providers.sms import TwilioProvider
from devtools.sinks import Rule, Sinks
from herald.breaker import CircuitBreaker
from herald.contracts import Channel, RenderedMessage, SendRequest
from herald.ports import free_port
from herald.settings import Settings

pytestmark = pytest.mark.fast

# Far longer than any answer of the in-process stand-ins, however loaded the machine ...
PROVIDER_TIMEOUT = 10.0
# ... except in the timeout test, where the stand-in holds its answer past this one.
SHORT_TIMEOUT = 0.05
# In-app messages are stored in PostgreSQL, not sent to a provider (tests/inbox).
PROVIDER_CHANNELS = [channel for channel in Channel if channel is not Channel.inapp]


@pytest.fixture(scope="module")
def sinks() -> Iterator[Sinks]:
    """This module's own provider stand-ins."""
    running = Sinks(smtp_port=free_port(), http_port=free_port()).start()
    yield running
    running.stop()


def settings_for(sinks: Sinks, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "smtp_port": sinks.smtp_port,
        "sms_api_url": sinks.http_url,
        "push_api_url": sinks.http_url,
        "provider_timeout_seconds": PROVIDER_TIMEOUT,
    }
    return Settings(**(values | overrides))


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """One client for the module (making one costs more than the tests using it)."""
    async with httpx.AsyncClient(timeout=PROVIDER_TIMEOUT) as client:
        yield client


def provider_for(channel: Channel, settings: Settings, http: httpx.AsyncClient) -> Provider:
    if channel is Channel.email:
        return SmtpProvider(settings)
    if channel is Channel.sms:
        return TwilioProvider(settings, http)
    if channel is Channel.chat:
        return deployment_providers(settings, http)[0]  # Slack
    return FcmProvider(settings, http)


def request_to(channel: Channel, max_attempts: int = 3) -> SendRequest:
    """A message to a recipient of its own, so each test's sink rule matches only it."""
    unique = uuid.uuid4().hex[:12]
    address = {
        Channel.email: f"{unique}@example.com",
        Channel.sms: f"+1555{int(unique, 16) % 10**7:07d}",
        Channel.push: f"tok-{unique}",
        Channel.chat: f"slack:C{unique.upper()}",
    }[channel]
    return SendRequest(
        notification_id=uuid.uuid4(),
        channel=channel,
        address=address,
        message=RenderedMessage(template_version=1, locale="en", subject="Hi", body="<p>Hi</p>"),
        max_attempts=max_attempts,
    )


def standalone() -> ActivityEnvironment:
    """An activity context of no workflow: nothing to tell that the send is retrying."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id=None, workflow_run_id=None)
    return env


def chain_of(provider: Provider) -> ProviderChain:
    """The provider as a channel's only provider, behind a breaker of its own."""
    return ProviderChain([Route(provider, CircuitBreaker(provider.name))])


async def failure_of(provider: Provider, request: SendRequest) -> ApplicationError:
    """The error the provider activity hands Temporal for one attempt of ``request``."""
    activity = ProviderActivity(chain_of(provider), engine=None)
    with pytest.raises(ApplicationError) as raised:
        await standalone().run(activity.send, request)
    await provider.close()
    return raised.value


HTTP_CHANNELS = [Channel.sms, Channel.push]


@pytest.mark.parametrize("channel", HTTP_CHANNELS)
@pytest.mark.parametrize(
    ("status", "retried", "provider_fault"),
    [
        (500, True, True),
        (502, True, True),
        (503, True, True),
        (408, True, True),
        (429, True, True),
        # The provider answered: this message is refused, other recipients are fine.
        (400, False, False),
        (404, False, False),
        (422, False, False),
        # Refusals of Herald's account: final for this provider, another one may send.
        (401, False, True),
        (402, False, True),
        (403, False, True),
    ],
)
async def test_http_statuses_are_retried_or_final(
    sinks: Sinks,
    http: httpx.AsyncClient,
    channel: Channel,
    status: int,
    retried: bool,
    provider_fault: bool,
) -> None:
    request = request_to(channel)
    sinks.state.add_rule(Rule(match=request.address, always=status))

    error = await failure_of(provider_for(channel, settings_for(sinks), http), request)

    assert error.non_retryable is not retried
    assert error.type == ("ProviderTransientError" if retried else "ProviderPermanentError")
    assert f"HTTP {status}" in error.message
    assert error.details[0]["attempt"] == 1
    cause = error.__cause__
    assert isinstance(cause, ProviderError) and cause.provider_fault is provider_fault


@pytest.mark.parametrize("channel", HTTP_CHANNELS)
@pytest.mark.parametrize(("status", "honoured"), [(429, True), (503, True), (400, False)])
async def test_retry_after_of_a_transient_answer_sets_the_next_attempts_delay(
    sinks: Sinks, http: httpx.AsyncClient, channel: Channel, status: int, honoured: bool
) -> None:
    request = request_to(channel)
    sinks.state.add_rule(Rule(match=request.address, always=status, retry_after=7.5))

    error = await failure_of(provider_for(channel, settings_for(sinks), http), request)

    assert error.next_retry_delay == (timedelta(seconds=7.5) if honoured else None)


@pytest.mark.parametrize("channel", PROVIDER_CHANNELS)
async def test_a_provider_slower_than_the_timeout_is_retried(
    sinks: Sinks, channel: Channel
) -> None:
    request = request_to(channel)
    sinks.state.add_rule(Rule(match=request.address, delay=SHORT_TIMEOUT * 5))
    settings = settings_for(sinks, provider_timeout_seconds=SHORT_TIMEOUT)

    async with httpx.AsyncClient(timeout=SHORT_TIMEOUT) as http:
        error = await failure_of(provider_for(channel, settings, http), request)

    assert (error.non_retryable, error.type) == (False, "ProviderTransientError")


@pytest.mark.parametrize("channel", PROVIDER_CHANNELS)
async def test_a_refused_connection_is_retried(
    sinks: Sinks, http: httpx.AsyncClient, channel: Channel
) -> None:
    nobody = free_port()
    settings = settings_for(
        sinks,
        smtp_port=nobody,
        sms_api_url=f"http://127.0.0.1:{nobody}",
        push_api_url=f"http://127.0.0.1:{nobody}",
        chat_slack_api_url=f"http://127.0.0.1:{nobody}/slack",
    )

    error = await failure_of(provider_for(channel, settings, http), request_to(channel))

    assert (error.non_retryable, error.type) == (False, "ProviderTransientError")


@pytest.mark.parametrize("channel", PROVIDER_CHANNELS)
async def test_a_transient_failure_of_the_last_attempt_is_final(
    sinks: Sinks, http: httpx.AsyncClient, channel: Channel
) -> None:
    request = request_to(channel, max_attempts=1)
    sinks.state.add_rule(Rule(match=request.address, always="transient"))

    error = await failure_of(provider_for(channel, settings_for(sinks), http), request)

    assert (error.non_retryable, error.type) == (True, "ProviderTransientError")


@pytest.mark.parametrize(
    ("reply", "retried", "provider_fault"),
    [
        # The relay itself is unwell: its breaker counts it.
        ("421 4.3.2 service shutting down", True, True),
        # Refusals of this one message: retried or final, never the relay's fault.
        ("451 4.3.0 temporary failure", True, False),
        ("452 4.2.2 mailbox full", True, False),
        ("550 5.1.1 no such user", False, False),
        ("554 5.7.1 message refused", False, False),
        # Refusals of Herald's account (authentication required, credentials rejected).
        ("530 5.7.0 authentication required", False, True),
        ("535 5.7.8 authentication credentials invalid", False, True),
    ],
)
async def test_smtp_replies_are_retried_or_final(
    sinks: Sinks, http: httpx.AsyncClient, reply: str, retried: bool, provider_fault: bool
) -> None:
    request = request_to(Channel.email)
    sinks.state.add_rule(Rule(match=request.address, always=reply))

    error = await failure_of(provider_for(Channel.email, settings_for(sinks), http), request)

    assert error.non_retryable is not retried
    assert reply.split()[0] in error.message
    cause = error.__cause__
    assert isinstance(cause, ProviderError) and cause.provider_fault is provider_fault


async def test_an_accepted_message_is_a_result_not_an_error(
    sinks: Sinks, http: httpx.AsyncClient
) -> None:
    request = request_to(Channel.sms)
    activity = ProviderActivity(
        chain_of(provider_for(Channel.sms, settings_for(sinks), http)), None
    )

    result = await standalone().run(activity.send, request)

    assert (result.provider, result.attempt, result.recorded) == ("twilio", 1, False)
    (received,) = sinks.state.received("sms", to=request.address)
    assert result.provider_message_id == received.message_id
