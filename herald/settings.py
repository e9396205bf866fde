"""Settings read from the environment (``HERALD_*``), with defaults for a local machine."""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from herald.keyring import (
    DEVELOPMENT_PAYLOAD_KEYS,
    DEVELOPMENT_SECRETS_KEYS,
    PayloadKeyError,
    parse_payload_keys,
)


class InsecureSettings(Exception):
    """A production start with a secret left at its development default."""


# Where compose (or any platform that mounts secrets as files) puts them: one file per
# setting, named like its variable (``/run/secrets/HERALD_UNSUBSCRIBE_SECRET``). The
# environment wins over a file; without the directory, only the environment is read.
_SECRETS_DIR = "/run/secrets"


class Settings(BaseSettings):
    """Every knob Herald has; each one is an environment variable ``HERALD_<NAME>``.

    Secrets are ``SecretStr``: shown as ``**********`` in reprs and logs, read with
    ``get_secret_value()`` where a provider needs them.
    """

    model_config = SettingsConfigDict(
        env_prefix="HERALD_",
        extra="ignore",
        secrets_dir=_SECRETS_DIR if os.path.isdir(_SECRETS_DIR) else None,
    )

    # "production" refuses to start while a secret still has its development default.
    env: str = "development"

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/herald"
    database_pool_size: int = 10
    # Where the API's LISTEN connections go (key revocations, new template versions, the
    # inbox stream): LISTEN needs a session of its own, so behind PgBouncer in
    # transaction mode point this at PostgreSQL itself. Unset: ``database_url``.
    database_listen_url: str | None = None
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_ui_url: str = "http://127.0.0.1:8233"
    task_queue_prefix: str = "herald"

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    max_request_bytes: int = 64 * 1024
    api_key_cache_seconds: float = 30.0
    # Submissions one API process starts at once; one that finds no free slot within the
    # wait is refused with 503 and Retry-After instead of queueing (see api/admission.py).
    api_max_concurrent_submissions: int = Field(default=64, ge=1)
    api_submission_wait_seconds: float = Field(default=0.25, ge=0)
    # The API process also runs an email worker and asks Temporal to hand a new
    # notification's first workflow task straight to it in the start's answer (eager
    # start), saving a round trip through the task queue. The API then needs Temporal up
    # to start (a worker cannot wait for a lazy connection). Other channels, and starts
    # made elsewhere (bridge, broadcasts), go through their queues as before.
    api_eager: bool = False

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_pool_size: int = 8
    email_from: str = "Herald <herald@localhost>"

    sms_api_url: str = "http://127.0.0.1:8025"
    sms_account_sid: str = "ACdev"
    sms_auth_token: SecretStr = SecretStr("dev-token")
    sms_from: str = "+15550000000"

    # A second provider per channel, tried when the first is unavailable (its circuit
    # breaker is open) or refuses us for good for its own reasons (e.g. credentials).
    # Unset (the default) keeps one provider per channel. Fields left unset take the
    # primary's value, so a second relay on another host only needs its host.
    smtp_secondary_host: str | None = None
    smtp_secondary_port: int | None = None
    smtp_secondary_username: str | None = None
    smtp_secondary_password: SecretStr | None = None
    sms_secondary_api_url: str | None = None
    sms_secondary_account_sid: str | None = None
    sms_secondary_auth_token: SecretStr | None = None
    sms_secondary_from: str | None = None
    push_secondary_api_url: str | None = None
    push_secondary_project_id: str | None = None
    push_secondary_token: SecretStr | None = None
    push_secondary_service_account_json: SecretStr | None = None

    push_api_url: str = "http://127.0.0.1:8025"
    push_project_id: str = "herald-dev"
    push_token: SecretStr = SecretStr("dev-token")
    # A Google service account key file (JSON) instead of the static ``push_token``: its
    # access tokens are minted and renewed by the workers. ``push_token_base_url`` sends
    # the token requests there instead of the key file's ``token_uri`` host (a local fake).
    push_service_account_json: SecretStr | None = None
    push_token_base_url: str | None = None

    # The deployment's chat channel (herald/chat.py). Teams and Discord need no account:
    # the user's address is the webhook. Slack needs a bot token: a tenant's comes from its
    # ``slack`` integration; the deployment's from here (unset: outside production, the
    # dev sink's Slack fake; in production, no deployment Slack).
    chat_slack_api_url: str = "http://127.0.0.1:8025/slack"
    chat_slack_bot_token: SecretStr | None = None
    # Origins (``scheme://host:port``, comma-separated) a Teams or Discord address may use
    # besides the services' own https hosts: the local fakes (``http://127.0.0.1:8025``).
    chat_webhook_origins: str = ""
    # Vonage's signature secret for its delivery receipts (``/v1/providers/vonage/receipts``);
    # unset: refused in production, the local fake's secret in development.
    vonage_signature_secret: SecretStr | None = None

    provider_timeout_seconds: float = 10.0
    max_attempts: int = Field(default=3, ge=1, le=100)
    retry_initial_interval_seconds: float = 1.0
    retry_backoff_coefficient: float = 2.0
    retry_maximum_interval_seconds: float = 300.0
    send_timeout_seconds: float = 30.0

    # Circuit breaker per provider (per worker process): open after this many
    # consecutive failures, probe once per reset period while open.
    breaker_failure_threshold: int = Field(default=5, ge=1)
    breaker_reset_seconds: float = Field(default=30.0, gt=0)
    # How many times one send may be put off by open breakers before it fails.
    breaker_max_deferrals: int = Field(default=100, ge=0)

    # Sending rate per channel across all of its workers (a limiter in Redis, and
    # Temporal's task-queue limit for retried sends); unset means unlimited.
    email_rate_per_second: float | None = Field(default=None, gt=0)
    sms_rate_per_second: float | None = Field(default=None, gt=0)
    push_rate_per_second: float | None = Field(default=None, gt=0)
    chat_rate_per_second: float | None = Field(default=None, gt=0)

    # REST rate limit per API key, shared by every API instance through Redis; a tenant
    # can have its own (``herald tenant limit``), which holds across all its keys.
    # Redis down → requests are let through.
    redis_url: str = "redis://127.0.0.1:6379/0"
    rate_limit_per_minute: int = Field(default=6000, ge=1)

    # Most of each thing one tenant may create through the API (beyond: 409): live,
    # unrevoked API keys, webhook endpoints, topics, and template keys.
    max_api_keys: int = Field(default=100, ge=1)
    max_webhooks: int = Field(default=20, ge=1)
    max_topics: int = Field(default=1000, ge=1)
    max_templates: int = Field(default=1000, ge=1)

    # What one render of a template (preview, save check, send) may produce and spend:
    # output bytes (and the size of any string or list it builds), and CPU milliseconds.
    # Beyond: 422 at preview and save, ``failed`` at send (herald/templating.py).
    render_max_bytes: int = Field(default=1024 * 1024, ge=1024)
    render_max_ms: int = Field(default=500, ge=1)

    # The RabbitMQ bridge (``herald bridge``) and everything that publishes to RabbitMQ.
    # Ingest messages share the REST body limit, ``max_request_bytes``.
    bridge_prefetch: int = Field(default=50, ge=1, le=65_535)
    bridge_delivery_limit: int = Field(default=10, ge=1)
    bridge_retry_initial_seconds: float = 0.5
    bridge_retry_maximum_seconds: float = 30.0
    bridge_shutdown_seconds: float = 30.0
    bridge_watchdog_seconds: float = 5.0
    amqp_reconnect_seconds: float = 2.0
    amqp_publish_timeout_seconds: float = 10.0

    worker_concurrency: int = 100
    # A channel worker's pollers: long polls open at once for workflow tasks (at least 2)
    # and for activity tasks, and the share of the workflow polls on the channel's queue
    # rather than the worker's sticky queue (at least one each). The defaults are the
    # SDK's: 5 x 0.2 leaves one poller on the queue every new notification arrives on,
    # and measured against 5 x 1.0 and 8 x 0.5 (benchmarks/hot_path.py) more pollers on
    # it bought no rate and cost the Temporal server more CPU per notification.
    worker_workflow_task_polls: int = Field(default=5, ge=2, le=1000)
    worker_nonsticky_poll_ratio: float = Field(default=0.2, gt=0, le=1)
    worker_activity_task_polls: int = Field(default=5, ge=1, le=1000)
    log_level: str = "INFO"

    # Workers and the bridge serve /metrics, /healthz and /readyz here; 0 turns it off.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=0, ge=0, le=65535)

    @model_validator(mode="after")
    def _no_development_secrets_in_production(self) -> Settings:
        if self.env != "production":
            return self
        # Only secrets that come with a development value: an unset one (no SMTP login)
        # is a real configuration, not a leftover. An empty one is a secret store's key
        # left blank.
        defaults = [
            f"HERALD_{name.upper()}"
            for name, field in type(self).model_fields.items()
            if isinstance(field.default, SecretStr)
            and getattr(self, name) in (field.default, SecretStr(""))
            # FCM authenticated by a service account needs no static token.
            and not (name == "push_token" and self.push_service_account_json is not None)
        ]
        if defaults:
            # Not a ValueError: pydantic passes it through as it is, for the CLI to show.
            raise InsecureSettings(
                f"HERALD_ENV=production, but {', '.join(defaults)} still "
                f"{'has its' if len(defaults) == 1 else 'have their'} development default "
                "or an empty value; "
                "set the real secret"
            )
        return self

    @property
    def listen_url(self) -> str:
        """Where LISTEN connections go (``database_listen_url``, else ``database_url``)."""
        return self.database_listen_url or self.database_url

    def secondary(self, channel: str) -> Settings | None:
        """These settings with the channel's secondary provider in the primary's place,
        or None when the channel has no secondary."""
        base = "smtp" if channel == "email" else channel
        marker = f"{base}_secondary_"
        overrides = {
            f"{base}_{name.removeprefix(marker)}": value
            for name, value in self.model_dump().items()
            if name.startswith(marker) and value is not None
        }
        if not overrides:
            return None
        if base == "push":
            # The secondary's own credential: never the primary's service account.
            overrides.setdefault("push_service_account_json", None)
        return self.model_copy(update=overrides)

    def as_env(self) -> dict[str, str]:
        """These settings as the environment a child process reads them from."""
        return {
            f"HERALD_{name.upper()}": str(
                value.get_secret_value() if isinstance(value, SecretStr) else value
            )
            for name, value in self.model_dump().items()
            if value is not None
        }

    # --- Worker shutdown ---
    # On SIGTERM a worker lets in-flight tasks finish this long; it exits a few seconds
    # later at the latest, whatever the Temporal server does.
    worker_shutdown_seconds: float = Field(default=30.0, gt=0)

    # --- Unsubscribe links and digests ---
    # Where Herald's API is reached from outside (links in messages): an https URL in
    # production. One-click unsubscribe links are ``{public_url}/u/{token}``.
    public_url: str = "http://127.0.0.1:8000"
    # Signs unsubscribe tokens and bounce addresses (herald/bounce_addresses.py); changing
    # it invalidates every link already sent and refuses bounces of mail already sent.
    unsubscribe_secret: SecretStr = SecretStr("dev-unsubscribe-secret")
    # The mailto address of ``List-Unsubscribe``; unset: ``unsubscribe@`` the domain of
    # ``bounce_address``, whose mail ``herald bounces`` takes. Set, it must reach it too.
    unsubscribe_mailto: str | None = None

    # --- The console (/console) ---
    # Signs the console's session cookies. Unset: a random secret per API process, so
    # sessions end when it restarts and hold on one API instance only; set it when
    # several instances serve the console.
    console_secret: SecretStr | None = None
    console_session_seconds: int = Field(default=8 * 3600, ge=60)
    # The session cookie is Secure (sent over HTTPS only); ``herald dev`` turns it off.
    console_secure_cookie: bool = True
    # How often open console pages refresh themselves.
    console_refresh_seconds: float = Field(default=2.0, gt=0)
    # The workers' /metrics URLs (comma-separated) the health page reads circuit breaker
    # states from; ``herald dev`` sets them.
    console_metrics_urls: str = ""

    # --- Delivery receipts and status webhooks ---
    # (``public_url`` above is also where Twilio's status callbacks go.)
    # Bounces come back to bounces+<notification id>.<mac>@<this address's domain> (signed
    # VERP), and the List-Unsubscribe mailto to unsubscribe@ that domain (unless
    # ``unsubscribe_mailto`` is set); ``herald bounces`` takes both on this port.
    bounce_address: str = "bounces@localhost"
    bounce_smtp_host: str = "127.0.0.1"
    bounce_smtp_port: int = Field(default=2526, ge=0, le=65535)
    # The email APIs' event webhooks (``/v1/providers/{sendgrid,mailgun,postmark}/events``,
    # herald/receipts_email.py): SendGrid's verification key (base64 DER or PEM), Mailgun's
    # webhook signing key, the basic-auth login Postmark's webhooks are set up with. Unset:
    # refused in production; in development, keys the local fakes sign with.
    sendgrid_webhook_public_key: str | None = None
    mailgun_webhook_signing_key: SecretStr | None = None
    postmark_webhook_username: str | None = None
    postmark_webhook_password: SecretStr | None = None
    # Webhook URLs must be https to a public address unless this is set (local development).
    webhooks_allow_private: bool = False
    # The dispatcher (``herald webhooks``): deliveries at once per process, per endpoint,
    # how long a claimed delivery is its own before another dispatcher may take it over
    # (more than the 10 s request timeout), and the retry schedule (at least 24 hours).
    webhook_concurrency: int = Field(default=32, ge=1)
    webhook_endpoint_concurrency: int = Field(default=4, ge=1)
    webhook_lease_seconds: float = Field(default=60.0, gt=10)
    webhook_poll_seconds: float = Field(default=0.5, gt=0)
    webhook_retry_initial_seconds: float = Field(default=5.0, gt=0)
    webhook_retry_maximum_seconds: float = Field(default=3600.0, gt=0)
    webhook_retry_hours: float = Field(default=24.0, gt=0)

    # --- Batch submission, topics and broadcasts ---
    # Body limit of the bulk routes (batch, topic subscribers, broadcasts); every other
    # route keeps ``max_request_bytes``.
    max_bulk_request_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    # Workflow starts one batch request (or one broadcast page) has in flight at once.
    batch_start_concurrency: int = Field(default=32, ge=1, le=1000)
    # Recipients a broadcast starts per second unless its request says otherwise: what
    # keeps a broadcast from starving the single notifications of every tenant.
    broadcast_rate_per_second: float = Field(default=20.0, gt=0)
    # Most recipients one page of a broadcast's fan-out reads and starts.
    broadcast_page_size: int = Field(default=200, ge=1, le=1000)

    # --- Alerting ---
    # How often the bridge samples its ingest queues' depth and the API how many
    # notifications are retrying (the gauges deploy/prometheus/alerts.yml alerts on).
    backlog_sample_seconds: float = Field(default=15.0, gt=0)
    # An ingest queue whose oldest waiting message is older than this shows red on the
    # health page, in /readyz's details and in ``herald doctor``; so does one the bridge
    # holds messages of (retrying an outage).
    queue_stale_seconds: float = Field(default=60.0, gt=0)

    # --- Payload encryption (herald/codec.py) and the codec endpoint (/codec) ---
    # ``kid1:base64key,kid2:base64key``: 32-byte AES keys; the first encrypts every payload
    # put in Temporal, all of them decrypt (rotate by putting a new key first). Make one:
    # ``echo "k2:$(head -c 32 /dev/urandom | base64)"``.
    payload_keys: SecretStr = SecretStr(DEVELOPMENT_PAYLOAD_KEYS)
    # The operator token /codec/decode and /codec/encode require (``Authorization: Bearer
    # <token>``); unset, they answer 403. Payloads are not tenant-scoped, so no API key
    # of a tenant is accepted there.
    codec_token: SecretStr | None = None
    # Serve /codec without a token (``herald dev``, whose Temporal UI sends none); refused
    # in production.
    codec_allow_anonymous: bool = False

    @field_validator("payload_keys")
    @classmethod
    def _payload_keys_parse(cls, value: SecretStr) -> SecretStr:
        try:
            parse_payload_keys(value.get_secret_value())
        except PayloadKeyError as err:
            # Not a ValueError: pydantic's message would quote the input, the keys.
            raise InsecureSettings(str(err)) from None
        return value

    # --- Per-tenant integrations (/v1/integrations, herald/secretbox.py) ---
    # Keys that encrypt integration credentials at rest, in HERALD_PAYLOAD_KEYS' form
    # (the first encrypts, all decrypt). The development default is refused in production.
    secrets_keys: SecretStr = SecretStr(DEVELOPMENT_SECRETS_KEYS)
    # How long a worker keeps a tenant's integrations before reading them again: a change
    # reaches sends within this.
    integrations_cache_seconds: float = Field(default=3.0, gt=0, le=300)
    # Integrations one tenant may have.
    max_integrations: int = Field(default=50, ge=1)

    @field_validator("secrets_keys")
    @classmethod
    def _secrets_keys_parse(cls, value: SecretStr) -> SecretStr:
        try:
            parse_payload_keys(value.get_secret_value(), "HERALD_SECRETS_KEYS")
        except PayloadKeyError as err:
            raise InsecureSettings(str(err)) from None
        return value

    @model_validator(mode="after")
    def _no_anonymous_codec_in_production(self) -> Settings:
        if self.env == "production" and self.codec_allow_anonymous:
            raise InsecureSettings(
                "HERALD_ENV=production, but HERALD_CODEC_ALLOW_ANONYMOUS is on: anyone could "
                "decrypt Temporal payloads; set HERALD_CODEC_TOKEN instead"
            )
        return self


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
