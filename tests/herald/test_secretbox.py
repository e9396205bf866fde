"""Integration credentials at rest: sealed with HERALD_SECRETS_KEYS, bound to their
tenant and integration, rotatable, and the development key refused in production."""

from __future__ import annotations

import base64
import uuid

import httpx
import pytest
from pydantic import ValidationError

from activities.providers import registry
from activities.providers.base import Provider
from api.schemas.integrations import CONFIGS
from herald.codec import DEVELOPMENT_SECRETS_KEYS
from herald.contracts import Channel
from herald.secretbox import SecretBox, SecretsError
from herald.settings import InsecureSettings, Settings

pytestmark = pytest.mark.fast

TENANT, INTEGRATION = uuid.uuid4(), uuid.uuid4()
CONFIG = {"api_key": "SG.very-secret-value", "from": "a@example.org"}


def _key(kid: str, byte: bytes) -> str:
    return f"{kid}:{base64.b64encode(byte * 32).decode()}"


def test_a_sealed_config_opens_for_its_own_row_only() -> None:
    box = SecretBox(_key("k1", b"a"))
    kid, sealed = box.seal(TENANT, INTEGRATION, CONFIG)
    assert kid == "k1"
    assert b"very-secret-value" not in sealed
    assert box.open(TENANT, INTEGRATION, kid, sealed) == CONFIG
    # Copied onto another tenant's row, or another integration's: it does not open.
    with pytest.raises(SecretsError):
        box.open(uuid.uuid4(), INTEGRATION, kid, sealed)
    with pytest.raises(SecretsError):
        box.open(TENANT, uuid.uuid4(), kid, sealed)
    # Altered by one bit: it does not open.
    changed = bytearray(sealed)
    changed[-1] ^= 1
    with pytest.raises(SecretsError):
        box.open(TENANT, INTEGRATION, kid, bytes(changed))


def test_a_new_key_first_seals_new_rows_and_old_rows_still_open() -> None:
    old = SecretBox(_key("k1", b"a"))
    kid, sealed = old.seal(TENANT, INTEGRATION, CONFIG)
    rotated = SecretBox(f"{_key('k2', b'b')},{_key('k1', b'a')}")
    assert rotated.open(TENANT, INTEGRATION, kid, sealed) == CONFIG
    assert rotated.seal(TENANT, INTEGRATION, CONFIG)[0] == "k2"
    # Once k1 is retired, its rows say so instead of opening.
    with pytest.raises(SecretsError, match="k1"):
        SecretBox(_key("k2", b"b")).open(TENANT, INTEGRATION, kid, sealed)


def test_the_development_key_works_here_and_is_refused_in_production() -> None:
    box = SecretBox.from_settings(Settings())
    kid, sealed = box.seal(TENANT, INTEGRATION, CONFIG)
    assert box.open(TENANT, INTEGRATION, kid, sealed) == CONFIG
    assert Settings().secrets_keys.get_secret_value() == DEVELOPMENT_SECRETS_KEYS
    with pytest.raises(InsecureSettings, match="HERALD_SECRETS_KEYS"):
        Settings(env="production")


def test_a_malformed_key_list_names_the_variable_but_not_the_key() -> None:
    with pytest.raises(InsecureSettings, match="HERALD_SECRETS_KEYS") as refused:
        Settings(secrets_keys="k1:bm90LTMyLWJ5dGVz")
    assert "bm90LTMyLWJ5dGVz" not in str(refused.value)


def test_every_builtin_provider_is_built_from_a_config() -> None:
    settings = Settings()
    http = httpx.AsyncClient()
    smtp = registry.build(
        Channel.email, "smtp", {"host": "mail.example.org", "port": "2525"}, settings, http
    )
    twilio = registry.build(
        Channel.sms,
        "twilio",
        {"account_sid": "ACx", "auth_token": "t", "from": "+15550001111"},
        settings,
        http,
        "mine",
    )
    fcm = registry.build(Channel.push, "fcm", {"project_id": "p", "token": "t"}, settings, http)
    assert (smtp.name, twilio.name, fcm.name) == ("smtp", "mine", "fcm")
    assert smtp._settings.smtp_port == 2525  # type: ignore[attr-defined]
    assert smtp._settings.smtp_password is None  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="token"):
        registry.build(Channel.push, "fcm", {"project_id": "p"}, settings, http)


async def test_a_provider_without_a_check_says_so() -> None:
    class Bare(Provider):
        name = "bare"

        async def deliver(self, request: object) -> str:
            return "x"

    ok, detail = await Bare().check()
    assert not ok and "not supported" in detail


def test_config_models_name_the_field_and_never_echo_the_value() -> None:
    with pytest.raises(ValidationError) as refused:
        CONFIGS[("email", "sendgrid")].model_validate({"api_key": "SG.x\x00y", "extra": "1"})
    locs = {tuple(e["loc"]) for e in refused.value.errors()}
    assert locs == {("api_key",), ("extra",)}
