"""Test keys' notifications: the provider chain hands them to the test-mode provider,
which answers by address and never calls a real provider."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from temporalio.testing import ActivityEnvironment

from activities.providers.base import Provider, ProviderError
from activities.providers.failover import ProviderChain, Route
from herald.breaker import CircuitBreaker
from herald.contracts import Channel, RenderedMessage, SendRequest

pytestmark = pytest.mark.fast


class Real(Provider):
    """A real provider that counts the messages it was given."""

    name = "smtp"

    def __init__(self) -> None:
        self.calls = 0

    async def deliver(self, request: SendRequest) -> str:
        self.calls += 1
        return "real-id"


def _chain() -> tuple[ProviderChain, Real]:
    real = Real()
    return ProviderChain([Route(real, CircuitBreaker("smtp", failure_threshold=1))]), real


def _request(address: str, *, test: bool = True) -> SendRequest:
    return SendRequest(
        notification_id=uuid.uuid4(),
        channel=Channel.email,
        address=address,
        message=RenderedMessage(template_version=1, locale="en", subject="s", body="b"),
        test=test,
    )


async def test_a_test_notification_is_accepted_without_reaching_the_provider() -> None:
    chain, real = _chain()
    delivery = await chain.deliver_via(_request("ada@example.com"))
    assert delivery.provider == "test"
    assert delivery.message_id.startswith("test-")
    assert real.calls == 0


async def test_a_live_notification_still_goes_to_the_provider() -> None:
    chain, real = _chain()
    delivery = await chain.deliver_via(_request("ada+fail@example.com", test=False))
    assert (delivery.provider, real.calls) == ("smtp", 1)


async def test_plus_fail_fails_for_good_on_the_first_attempt() -> None:
    chain, real = _chain()
    with pytest.raises(ProviderError) as refused:
        await chain.deliver_via(_request("ada+fail@example.com"))
    assert refused.value.permanent
    assert refused.value.provider == "test"
    assert real.calls == 0


@pytest.mark.parametrize(("attempt", "fails"), [(1, True), (2, True), (3, False), (4, False)])
async def test_plus_retry_fails_twice_then_succeeds(attempt: int, fails: bool) -> None:
    chain, real = _chain()
    request = _request("ada+retry@example.com")
    # The send activity's attempt numbers are the provider's.
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt)
    if fails:
        with pytest.raises(ProviderError) as failed:
            await env.run(chain.deliver_via, request)
        assert not failed.value.permanent
        assert f"attempt {attempt}" in str(failed.value)
    else:
        assert (await env.run(chain.deliver_via, request)).provider == "test"
    assert real.calls == 0
