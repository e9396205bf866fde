"""Settings read from the environment (``HERALD_*``), with defaults for a local machine."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob Herald has; each one is an environment variable ``HERALD_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="HERALD_", extra="ignore")

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/herald"
    database_pool_size: int = 10
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_ui_url: str = "http://127.0.0.1:8233"
    task_queue_prefix: str = "herald"

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    max_request_bytes: int = 64 * 1024
    api_key_cache_seconds: float = 30.0

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_pool_size: int = 8
    email_from: str = "Herald <herald@localhost>"

    sms_api_url: str = "http://127.0.0.1:8025"
    sms_account_sid: str = "ACdev"
    sms_auth_token: str = "dev-token"
    sms_from: str = "+15550000000"

    push_api_url: str = "http://127.0.0.1:8025"
    push_project_id: str = "herald-dev"
    push_token: str = "dev-token"

    provider_timeout_seconds: float = 10.0
    max_attempts: int = Field(default=3, ge=1, le=100)
    retry_initial_interval_seconds: float = 1.0
    retry_backoff_coefficient: float = 2.0
    retry_maximum_interval_seconds: float = 300.0
    send_timeout_seconds: float = 30.0

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
    log_level: str = "INFO"

    # Workers and the bridge serve /metrics, /healthz and /readyz here; 0 turns it off.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=0, ge=0, le=65535)

    def as_env(self) -> dict[str, str]:
        """These settings as the environment a child process reads them from."""
        return {
            f"HERALD_{name.upper()}": str(value)
            for name, value in self.model_dump().items()
            if value is not None
        }


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
