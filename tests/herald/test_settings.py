"""Settings from the environment: defaults, secrets that never show, the environment
handed to child processes, secondary providers, and the refusal of a production start
with development secrets."""

from __future__ import annotations

import base64
import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from herald.logs import HeraldJsonFormatter
from herald.settings import InsecureSettings, Settings

SECRETS = {
    "HERALD_SMTP_PASSWORD": "smtp-pass-1",
    "HERALD_SMTP_SECONDARY_PASSWORD": "smtp-pass-2",
    "HERALD_SMS_AUTH_TOKEN": "sms-token-1",
    "HERALD_SMS_SECONDARY_AUTH_TOKEN": "sms-token-2",
    "HERALD_PUSH_TOKEN": "push-token-1",
    "HERALD_PUSH_SECONDARY_TOKEN": "push-token-2",
}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Only what a test sets: none of the HERALD_* variables of whoever runs the tests."""
    for name in list(os.environ):
        if name.startswith("HERALD_"):
            monkeypatch.delenv(name)
    yield


def test_defaults_work_on_a_local_machine() -> None:
    settings = Settings()
    assert settings.env == "development"
    assert settings.database_url == "postgresql+asyncpg://postgres@127.0.0.1:5432/herald"
    assert settings.smtp_password is None
    assert settings.sms_auth_token.get_secret_value() == "dev-token"
    assert settings.push_token.get_secret_value() == "dev-token"
    assert settings.secondary("sms") is None


def test_settings_come_from_herald_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_API_PORT", "9001")
    monkeypatch.setenv("HERALD_SMTP_STARTTLS", "true")
    monkeypatch.setenv("HERALD_SMTP_PASSWORD", "hunter2")
    settings = Settings()
    assert settings.api_port == 9001
    assert settings.smtp_starttls is True
    assert settings.smtp_password is not None
    assert settings.smtp_password.get_secret_value() == "hunter2"


def test_secrets_never_show_in_reprs_or_log_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(HeraldJsonFormatter("%(levelname)s %(name)s %(message)s"))
    log = logging.getLogger("tests.settings")
    log.addHandler(handler)
    try:
        log.warning("settings %s", settings, extra={"settings": settings.model_dump(mode="json")})
        log.warning("provider %s", settings.secondary("sms"))
    finally:
        log.removeHandler(handler)
    shown = "\n".join([repr(settings), str(settings), stream.getvalue()])
    assert "**********" in shown
    for secret in SECRETS.values():
        assert secret not in shown


def test_child_processes_get_the_real_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(
        smtp_password="smtp-pass-1", sms_auth_token="sms-token-1", push_secondary_token="p2"
    )
    env = settings.as_env()
    assert env["HERALD_SMTP_PASSWORD"] == "smtp-pass-1"
    assert env["HERALD_SMS_AUTH_TOKEN"] == "sms-token-1"
    assert env["HERALD_PUSH_SECONDARY_TOKEN"] == "p2"
    assert "HERALD_SMS_SECONDARY_AUTH_TOKEN" not in env  # unset stays unset

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings() == settings


def test_a_secondary_provider_takes_its_own_secret_and_the_primarys_rest() -> None:
    settings = Settings(
        sms_auth_token="primary",
        sms_secondary_auth_token="backup",
        smtp_password="primary-pass",
        smtp_secondary_host="relay-2.example.com",
        push_secondary_api_url="http://fcm-2.example.com",
    )
    sms = settings.secondary("sms")
    assert sms is not None
    assert sms.sms_auth_token.get_secret_value() == "backup"
    assert sms.sms_account_sid == settings.sms_account_sid

    email = settings.secondary("email")
    assert email is not None
    assert email.smtp_host == "relay-2.example.com"
    assert email.smtp_password is not None
    assert email.smtp_password.get_secret_value() == "primary-pass"

    push = settings.secondary("push")
    assert push is not None
    assert push.push_api_url == "http://fcm-2.example.com"
    assert push.push_token.get_secret_value() == "dev-token"


def test_production_refuses_development_secrets_and_names_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HERALD_ENV", "production")
    with pytest.raises(InsecureSettings) as refused:
        Settings()
    assert "HERALD_SMS_AUTH_TOKEN" in str(refused.value)
    assert "HERALD_PUSH_TOKEN" in str(refused.value)

    monkeypatch.setenv("HERALD_SMS_AUTH_TOKEN", "real-sms-token")
    with pytest.raises(InsecureSettings) as refused:
        Settings()
    assert "HERALD_PUSH_TOKEN" in str(refused.value)
    assert "HERALD_SMS_AUTH_TOKEN" not in str(refused.value)


def test_production_starts_once_every_secret_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_ENV", "production")
    monkeypatch.setenv("HERALD_SMS_AUTH_TOKEN", "real-sms-token")
    monkeypatch.setenv("HERALD_PUSH_TOKEN", "real-push-token")
    monkeypatch.setenv("HERALD_UNSUBSCRIBE_SECRET", "real-unsubscribe-secret")
    monkeypatch.setenv("HERALD_PAYLOAD_KEYS", "k1:" + base64.b64encode(b"k" * 32).decode())
    monkeypatch.setenv("HERALD_SECRETS_KEYS", "s1:" + base64.b64encode(b"s" * 32).decode())
    settings = Settings()
    assert settings.env == "production"
    assert settings.push_token.get_secret_value() == "real-push-token"
    # FCM through a service account key file needs no static token.
    monkeypatch.delenv("HERALD_PUSH_TOKEN")
    with pytest.raises(InsecureSettings, match="HERALD_PUSH_TOKEN"):
        Settings()
    monkeypatch.setenv("HERALD_PUSH_SERVICE_ACCOUNT_JSON", '{"type": "service_account"}')
    assert Settings().push_token.get_secret_value() == "dev-token"


def test_the_herald_command_reports_the_refusal_in_one_line() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HERALD_")}
    done = subprocess.run(
        [sys.executable, "-m", "cli", "worker", "--queue", "core"],
        env={**env, "HERALD_ENV": "production", "HERALD_SMS_AUTH_TOKEN": "real-sms-token"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("herald: ")
    assert "HERALD_PUSH_TOKEN" in lines[0]
    assert "HERALD_SMS_AUTH_TOKEN" not in lines[0]


def test_production_refuses_the_development_unsubscribe_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HERALD_ENV", "production")
    monkeypatch.setenv("HERALD_SMS_AUTH_TOKEN", "real-sms-token")
    monkeypatch.setenv("HERALD_PUSH_TOKEN", "real-push-token")
    with pytest.raises(InsecureSettings) as refused:
        Settings()
    assert "HERALD_UNSUBSCRIBE_SECRET" in str(refused.value)
    assert "dev-unsubscribe-secret" not in repr(Settings(env="development"))
