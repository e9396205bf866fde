"""The provider chain: which provider gets a message, and what is failed over."""

from __future__ import annotations

import uuid

import pytest

from activities.providers.attempts import AttemptLedger
from activities.providers.base import CircuitOpenError, Provider, ProviderError
from activities.providers.failover import ProviderChain, Route
from herald.breaker import BreakerState, CircuitBreaker
from herald.contracts import Channel, RenderedMessage, SendRequest

pytestmark = pytest.mark.fast


class Scripted(Provider):
    """Answers from a script: an exception to raise, or a message id."""

    def __init__(self, name: str, *answers: str | Exception) -> None:
        self.name = name
        self.answers = list(answers)
        self.calls = 0

    async def deliver(self, request: SendRequest) -> str:
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def _request() -> SendRequest:
    return SendRequest(
        notification_id=uuid.uuid4(),
        channel=Channel.sms,
        address="+15550001111",
        message=RenderedMessage(template_version=1, locale="en", body="hi"),
    )


def _chain(*providers: Scripted, threshold: int = 2) -> ProviderChain:
    return ProviderChain(
        [
            Route(p, CircuitBreaker(p.name, failure_threshold=threshold, reset_seconds=60))
            for p in providers
        ]
    )


async def test_transient_failures_stay_on_the_provider_until_its_breaker_opens() -> None:
    primary = Scripted("a", ProviderError("HTTP 503", permanent=False))
    secondary = Scripted("b", "id-b")
    chain = _chain(primary, secondary)
    for _ in range(2):
        with pytest.raises(ProviderError) as failed:
            await chain.deliver_via(_request())
        assert failed.value.provider == "a"
    assert chain.routes[0].breaker.state is BreakerState.open
    delivery = await chain.deliver_via(_request())
    assert (delivery.provider, delivery.message_id) == ("b", "id-b")
    assert (primary.calls, secondary.calls) == (2, 1)


async def test_a_permanent_refusal_of_our_account_fails_over_at_once() -> None:
    primary = Scripted("a", ProviderError("HTTP 401", permanent=True, provider_fault=True))
    secondary = Scripted("b", "id-b")
    delivery = await _chain(primary, secondary).deliver_via(_request())
    assert delivery.provider == "b"


async def test_a_refusal_of_the_recipient_is_final_and_not_held_against_the_provider() -> None:
    primary = Scripted("a", ProviderError("HTTP 400 invalid To", permanent=True))
    secondary = Scripted("b", "id-b")
    chain = _chain(primary, secondary, threshold=1)
    with pytest.raises(ProviderError, match="invalid To"):
        await chain.deliver_via(_request())
    assert secondary.calls == 0
    assert chain.routes[0].breaker.state is BreakerState.closed


async def test_every_breaker_open_defers_without_calling_anyone() -> None:
    primary = Scripted("a", ProviderError("HTTP 503", permanent=False))
    chain = _chain(primary, threshold=1)
    with pytest.raises(ProviderError):
        await chain.deliver_via(_request())
    ledger = AttemptLedger.resume()
    with pytest.raises(CircuitOpenError) as deferred:
        await chain.deliver_via(_request())
    assert 59 <= (deferred.value.retry_after or 0) <= 61
    assert primary.calls == 1
    assert not ledger.spent  # a deferral is not a provider attempt
    error = ledger.defer(deferred.value.retry_after or 0, str(deferred.value), max_deferrals=5)
    assert not error.non_retryable and error.next_retry_delay is not None
    assert error.type == "ProviderUnavailable"
