"""What the provider tests against the messaging fakes share (OneSignal, Vonage, Slack,
Teams, Discord): the fakes' state, an HTTP client that reaches the fakes in process, a
provider configured with the fakes' credentials, and the refusal a delivery raised.

A test module that imports ``fakes_state`` and ``fakes_http`` has the fixtures ``state``
and ``http`` (named apart so a test's parameters do not shadow the imports)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable

import httpx
import pytest

from activities.providers.base import ProviderError
from activities.providers.http import HttpProvider
from activities.providers.registry import build
from devtools.fakes.messaging_apis import FakeCredentials, MessagingApiFakes
from devtools.sinks import SinkState
from herald.contracts import Channel
from herald.settings import Settings

BASE = "http://fake.test"
CREDS = FakeCredentials()


@pytest.fixture(name="state")
def fakes_state() -> SinkState:
    """What the fakes received, and the rules by which they refuse."""
    return SinkState(seed=1)


@pytest.fixture(name="http")
async def fakes_http(state: SinkState) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose every request is answered by the messaging fakes, in process."""
    async with httpx.AsyncClient(transport=MessagingApiFakes(state, CREDS).transport()) as c:
        yield c


def fake_provider(
    channel: Channel,
    name: str,
    http: httpx.AsyncClient,
    settings: Settings | None = None,
    /,
    **change: str,
) -> HttpProvider:
    """Provider ``name`` configured to reach its fake at ``BASE`` with the fakes'
    credentials, ``change`` overriding config entries (a wrong key, say)."""
    config = CREDS.config(name, BASE) | change
    provider = build(channel, name, config, settings or Settings(), http)
    assert isinstance(provider, HttpProvider)
    return provider


async def refusal(delivery: Awaitable[object]) -> ProviderError:
    """The ``ProviderError`` that awaiting ``delivery`` raises; the test fails if none."""
    with pytest.raises(ProviderError) as caught:
        await delivery
    return caught.value
