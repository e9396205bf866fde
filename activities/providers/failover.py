"""Several providers for one channel, tried in order, each behind its own circuit breaker.

A message goes to the first provider whose breaker lets it through. The next provider
is tried when the first one's breaker is open, or when it failed permanently for a
reason that is its own fault (credentials refused, no such account): another provider
can do better. A transient failure (5xx, timeout) is not failed over within the same
attempt: the first provider may have delivered the message before failing to say so,
and a second provider cannot recognise the idempotency key of the first. Temporal
retries it instead, and once the first provider's breaker opens, the retries go to the
next one. A refusal for the recipient's own reasons (invalid number, unknown mailbox)
is final: every provider would refuse it; a temporary one (a greylisting 451) is retried
under the notification's policy. Neither counts against the provider's breaker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from activities.providers.attempts import refund_attempt, spend_attempt
from activities.providers.base import CircuitOpenError, Delivery, Provider, ProviderError
from activities.providers.chat import deployment_providers as chat_providers
from activities.providers.email import SmtpProvider
from activities.providers.push import FcmProvider, ServiceAccount
from activities.providers.registry import provider_factory
from activities.providers.sms import TwilioProvider
from activities.providers.testmode import TEST_MODE
from herald.breaker import CircuitBreaker
from herald.contracts import Channel, SendRequest
from herald.settings import Settings


@dataclass(frozen=True)
class Route:
    """One provider of a channel and its breaker."""

    provider: Provider
    breaker: CircuitBreaker


class ProviderChain:
    """The providers of one channel in order of preference: what a provider activity
    delivers through."""

    def __init__(self, routes: Sequence[Route]) -> None:
        if not routes:
            raise ValueError("a channel needs at least one provider")
        self.routes = list(routes)
        self.name = "/".join(route.provider.name for route in self.routes)

    async def deliver_via(self, request: SendRequest) -> Delivery:
        """Deliver through the first provider that can, and say which one did it."""
        if request.test:  # a test key's notification never reaches a real provider
            return Delivery(provider=TEST_MODE.name, message_id=await TEST_MODE.deliver(request))
        retry_in: list[float] = []
        refused: ProviderError | None = None
        for route in self.routes:
            breaker = route.breaker
            if not route.provider.serves(request):
                continue
            if not breaker.allow():
                retry_in.append(breaker.retry_in())
                continue
            probe = breaker.probing
            spend_attempt()
            try:
                message_id = await route.provider.deliver(request)
            except ProviderError as err:
                err.provider = err.provider or route.provider.name
                if not err.provider_fault:
                    breaker.record_success()  # it answered; the recipient is the problem
                    raise
                breaker.record_failure()
                if err.permanent:
                    refused = err
                    continue
                if probe:
                    # The probe only confirmed the outage: the breaker's cost, not the send's.
                    refund_attempt()
                    waits = [other.breaker.retry_in() for other in self.routes]
                    raise self._unavailable(request, waits, str(err)) from err
                raise
            except (TimeoutError, OSError) as err:
                breaker.record_failure()
                raise ProviderError(
                    f"{type(err).__name__}: {err}", permanent=False, provider=route.provider.name
                ) from err
            except BaseException:
                breaker.release()
                raise
            breaker.record_success()
            return Delivery(provider=route.provider.name, message_id=message_id)
        if retry_in:
            raise self._unavailable(request, retry_in, str(refused) if refused else None)
        if refused is None:  # no provider here sends to this kind of address
            raise ProviderError(
                f"no {request.channel.value} provider configured for this address "
                f"({request.address.split(':', 1)[0][:40]})",
                permanent=True,
                provider_fault=False,
                provider=self.name,
            )
        raise refused

    def _unavailable(
        self, request: SendRequest, retry_in: list[float], last_error: str | None
    ) -> CircuitOpenError:
        why = f" (last error: {last_error})" if last_error else ""
        return CircuitOpenError(
            f"every {request.channel.value} provider is unavailable, circuit open{why}",
            retry_after=min(retry_in),
            provider=self.name,
        )

    async def close(self) -> None:
        """Close every provider."""
        for route in self.routes:
            await route.provider.close()


def _provider(channel: Channel, settings: Settings, http: httpx.AsyncClient, name: str) -> Provider:
    if channel is Channel.email:
        return SmtpProvider(settings, name=name)
    if channel is Channel.sms:
        return TwilioProvider(settings, http, name=name)
    account = settings.push_service_account_json
    return FcmProvider(
        settings,
        http,
        name=name,
        service_account=ServiceAccount.read(account.get_secret_value()) if account else None,
        token_base=settings.push_token_base_url,
    )


# The built-in providers as a tenant's integrations: their settings with the config's
# values in place of the deployment's (API.md, "Providers and integrations").
def _configured(settings: Settings, config: Mapping[str, str], fields: dict[str, str]) -> Settings:
    update: dict[str, Any] = {}
    for key, setting in fields.items():
        value = config.get(key)
        if value is None or value == "":
            continue
        current = Settings.model_fields[setting].annotation
        if setting.endswith(("_password", "_token")):
            update[setting] = SecretStr(value)
        elif current is int:
            update[setting] = int(value)
        elif current is bool:
            update[setting] = value.strip().lower() in ("1", "true", "yes", "on")
        else:
            update[setting] = value
    return settings.model_copy(update=update)


@provider_factory(Channel.email, "smtp")
def _smtp(
    config: Mapping[str, str], settings: Settings, http: httpx.AsyncClient, name: str
) -> Provider:
    if not config.get("host"):
        raise ValueError("smtp config needs 'host'")
    fields = {
        "host": "smtp_host",
        "port": "smtp_port",
        "username": "smtp_username",
        "password": "smtp_password",
        "starttls": "smtp_starttls",
        "from": "email_from",
    }
    # The tenant's relay, with none of the deployment's login.
    own = settings.model_copy(update={"smtp_username": None, "smtp_password": None})
    return SmtpProvider(_configured(own, config, fields), name=name)


@provider_factory(Channel.sms, "twilio")
def _twilio(
    config: Mapping[str, str], settings: Settings, http: httpx.AsyncClient, name: str
) -> Provider:
    fields = {
        "account_sid": "sms_account_sid",
        "auth_token": "sms_auth_token",
        "from": "sms_from",
        "base_url": "sms_api_url",
    }
    for key in ("account_sid", "auth_token", "from"):
        if not config.get(key):
            raise ValueError(f"twilio config needs {key!r}")
    return TwilioProvider(_configured(settings, config, fields), http, name=name)


@provider_factory(Channel.push, "fcm")
def _fcm(
    config: Mapping[str, str], settings: Settings, http: httpx.AsyncClient, name: str
) -> Provider:
    account_json, token = config.get("service_account_json"), config.get("token")
    if not config.get("project_id") or bool(account_json) == bool(token):
        raise ValueError(
            "fcm config needs 'project_id' and one of 'service_account_json' or 'token'"
        )
    fields = {"project_id": "push_project_id", "token": "push_token", "base_url": "push_api_url"}
    return FcmProvider(
        _configured(settings, config, fields),
        http,
        name=name,
        service_account=ServiceAccount.read(account_json) if account_json else None,
        token_base=config.get("base_url"),
    )


_PRIMARY_NAMES = {Channel.email: "smtp", Channel.sms: "twilio", Channel.push: "fcm"}


def _breaker(name: str, settings: Settings) -> CircuitBreaker:
    return CircuitBreaker(
        name,
        failure_threshold=settings.breaker_failure_threshold,
        reset_seconds=settings.breaker_reset_seconds,
        probe_wait_seconds=min(settings.provider_timeout_seconds, 5.0),
    )


def channel_providers(
    channel: Channel, settings: Settings, http: httpx.AsyncClient
) -> ProviderChain:
    """The channel's providers from settings (the primary, then the secondary if set),
    each with a circuit breaker of its own."""
    if channel is Channel.chat:  # one provider per kind of address (chat.py)
        return ProviderChain(
            [
                Route(provider=provider, breaker=_breaker(provider.name, settings))
                for provider in chat_providers(settings, http)
            ]
        )
    primary = _PRIMARY_NAMES[channel]
    configured = [(primary, settings)]
    secondary = settings.secondary(channel.value)
    if secondary is not None:
        configured.append((f"{primary}-secondary", secondary))
    return ProviderChain(
        [
            Route(
                provider=_provider(channel, config, http, name),
                breaker=CircuitBreaker(
                    name,
                    failure_threshold=settings.breaker_failure_threshold,
                    reset_seconds=settings.breaker_reset_seconds,
                    probe_wait_seconds=min(settings.provider_timeout_seconds, 5.0),
                ),
            )
            for name, config in configured
        ]
    )
