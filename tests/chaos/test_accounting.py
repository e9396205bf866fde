"""The chaos suite's duplicate accounting: a second copy at a sink is explained only by a
fault that could have hidden the first copy's attempt from Temporal."""

from __future__ import annotations

import pytest

from devtools.sinks import Received, SinkRequest
from tests.chaos.suite import Outage, unexplained_copies

pytestmark = pytest.mark.fast

KEY = "5b0e0d2c-0000-4000-8000-000000000001"
TIMEOUT = 2.0


def copy(at: float, channel: str = "email", held: float = 0.0) -> Received:
    """A copy of KEY that reached the sink at ``at`` and was accepted ``held`` s later."""
    key = f"<{KEY}@herald.local>" if channel == "email" else KEY
    return Received(
        channel=channel,
        to="a@example.com",
        body="",
        idempotency_key=key,
        arrived_at=at,
        at=at + held,
    )


def request(at: float, channel: str = "email", failure: str | None = None) -> SinkRequest:
    key = f"<{KEY}@herald.local>" if channel == "email" else KEY
    return SinkRequest(channel, "a@example.com", key, at, failure)


def account(
    copies: list[Received], requests: list[SinkRequest], outages: dict[str, list[Outage]]
) -> int:
    return sum(unexplained_copies(copies, requests, outages, provider_timeout=TIMEOUT).values())


def test_a_retried_notification_sent_twice_with_nothing_killed_is_unexplained() -> None:
    # Attempt 1 failed (503), attempt 2 delivered, and then a third copy went out: the
    # notification had several attempts, which alone explains nothing.
    requests = [request(100.0, failure="transient"), request(101.0), request(103.0)]
    copies = [copy(101.0), copy(103.0)]

    assert account(copies, requests, {}) == 1
    # A kill long before, or of another channel's worker, explains nothing either.
    assert account(copies, requests, {"worker-email": [(90.0, 90.0)]}) == 1
    assert account(copies, requests, {"worker-sms": [(102.0, 102.0)]}) == 1
    assert account(copies, requests, {"worker-core": [(102.0, 102.0)]}) == 1


def test_a_kill_of_the_channel_worker_before_the_next_attempt_explains_the_copy() -> None:
    requests = [request(101.0), request(108.0)]
    copies = [copy(101.0), copy(108.0)]

    assert account(copies, requests, {"worker-email": [(101.2, 101.2)]}) == 0
    # Killed after the next attempt had begun: the first attempt's outcome was known.
    assert account(copies, requests, {"worker-email": [(108.5, 108.5)]}) == 1


def test_the_temporal_server_down_between_the_copy_and_the_next_attempt_explains_it() -> None:
    requests = [request(50.0, "push"), request(58.0, "push")]
    copies = [copy(50.0, "push"), copy(58.0, "push")]

    assert account(copies, requests, {"temporal": [(49.0, 51.5)]}) == 0
    assert account(copies, requests, {"temporal": [(40.0, 45.0)]}) == 1


def test_a_copy_the_sink_held_past_the_provider_timeout_is_explained() -> None:
    # The sink answered attempt 1 after 3 s; the sender had given up after 2 s and
    # attempt 2 arrived (and was accepted) before attempt 1's late acceptance.
    requests = [request(10.0, "sms"), request(12.3, "sms")]
    copies = [copy(10.0, "sms", held=3.0), copy(12.3, "sms")]

    assert account(copies, requests, {}) == 0
    # Held, but for less than the timeout: the sender got its answer.
    assert account([copy(10.0, "sms", held=1.0), copy(12.3, "sms")], requests, {}) == 1


def test_every_extra_copy_needs_its_own_explanation() -> None:
    requests = [request(1.0), request(9.0), request(17.0)]
    copies = [copy(1.0), copy(9.0), copy(17.0)]

    assert account(copies, requests, {"worker-email": [(2.0, 2.0)]}) == 1
    assert account(copies, requests, {"worker-email": [(2.0, 2.0), (10.0, 10.0)]}) == 0


def test_one_copy_per_key_needs_no_explanation() -> None:
    assert account([copy(1.0)], [request(0.5, failure="transient"), request(1.0)], {}) == 0
