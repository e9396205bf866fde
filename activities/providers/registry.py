"""Every provider Herald can speak, by channel and name, built from a ``config`` mapping.

The deployment's own providers come from settings (``failover.channel_providers``); a
tenant's integrations (``/v1/integrations``) name a provider and carry its ``config``
(API.md, "Providers and integrations"), and are built here. A provider module registers
its factory with ``@provider_factory(Channel.email, "sendgrid")``.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Mapping

import httpx

import activities.providers
from activities.providers.base import Provider
from herald.contracts import Channel
from herald.settings import Settings

# (config, settings, shared HTTP client, the name the provider reports as) -> Provider
ProviderFactory = Callable[[Mapping[str, str], Settings, httpx.AsyncClient, str], Provider]

FACTORIES: dict[tuple[Channel, str], ProviderFactory] = {}


def provider_factory(
    channel: Channel, provider: str
) -> Callable[[ProviderFactory], ProviderFactory]:
    """Register ``factory`` as the way to build ``provider`` for ``channel``."""

    def register(factory: ProviderFactory) -> ProviderFactory:
        FACTORIES[(channel, provider)] = factory
        return factory

    return register


@functools.cache
def load_providers() -> None:
    """Import every module of ``activities.providers``, so each has registered its
    factories."""
    for module in pkgutil.iter_modules(activities.providers.__path__):
        importlib.import_module(f"activities.providers.{module.name}")


def known(channel: Channel) -> list[str]:
    """The providers ``channel`` can be configured with."""
    load_providers()
    return sorted(name for ch, name in FACTORIES if ch is channel)


def build(
    channel: Channel,
    provider: str,
    config: Mapping[str, str],
    settings: Settings,
    http: httpx.AsyncClient,
    name: str | None = None,
) -> Provider:
    """A ``provider`` for ``channel`` configured by ``config``; ``KeyError`` if unknown."""
    load_providers()
    return FACTORIES[(channel, provider)](config, settings, http, name or provider)
