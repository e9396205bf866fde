"""The payload codec: what Temporal stores is encrypted, decodes with any listed key,
refuses altered bytes, and leaves the clear payloads of older histories alone."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload

from devtools.devserver import TemporalDevServer
from devtools.devstack import console_env
from devtools.processes import ManagedProcess
from herald.codec import (
    DEVELOPMENT_PAYLOAD_KEYS,
    ENCODING,
    KEY_ID,
    EncryptionCodec,
    PayloadDecryptionError,
    PayloadKeyError,
    parse_payload_keys,
)
from herald.contracts import NotificationRequest
from herald.settings import InsecureSettings, Settings
from herald.temporal import data_converter

pytestmark = pytest.mark.fast

ADDRESS = "ada.lovelace@example.com"


def key_spec(*kids: str) -> str:
    """``kid:base64key,...`` with a fresh random key per id."""
    return ",".join(f"{kid}:{base64.b64encode(os.urandom(32)).decode()}" for kid in kids)


def clear(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=text.encode())


async def test_a_request_round_trips_and_is_never_stored_in_the_clear() -> None:
    converter = data_converter(Settings(payload_keys=key_spec("k1")))
    request = NotificationRequest.model_validate(
        {
            "user_id": "u-1",
            "channel": "email",
            "template": "welcome",
            "data": {"secret_value": "tea at four", "email": ADDRESS},
        }
    )
    (stored,) = await converter.encode([request])
    assert stored.metadata["encoding"] == ENCODING
    assert stored.metadata[KEY_ID] == b"k1"
    for needle in (ADDRESS, "tea at four", "welcome", "json/plain"):
        assert needle.encode() not in stored.SerializeToString()
    (back,) = await converter.decode([stored], [NotificationRequest])
    assert back == request


async def test_each_payload_gets_its_own_nonce() -> None:
    codec = EncryptionCodec.from_spec(key_spec("k1"))
    first, second = await codec.encode([clear('"same"'), clear('"same"')])
    assert first.data != second.data


async def test_rotation_old_payloads_decode_after_a_new_key_is_put_first() -> None:
    old_spec = key_spec("2025")
    before = EncryptionCodec.from_spec(old_spec)
    (stored,) = await before.encode([clear('"recorded last year"')])

    after = EncryptionCodec.from_spec(f"{key_spec('2026')},{old_spec}")
    assert after.current_key_id == "2026"
    assert await after.decode([stored]) == [clear('"recorded last year"')]
    (fresh,) = await after.encode([clear('"new"')])
    assert fresh.metadata[KEY_ID] == b"2026"
    # A process that has not got the new key yet cannot read the new payload: deploy
    # the key list everywhere before the new key encrypts (README, "Payload encryption").
    with pytest.raises(PayloadDecryptionError, match="'2026'"):
        await before.decode([fresh])


async def test_a_payload_whose_key_was_retired_is_refused_by_name() -> None:
    (stored,) = await EncryptionCodec.from_spec(key_spec("gone")).encode([clear('"x"')])
    with pytest.raises(PayloadDecryptionError, match="'gone'"):
        await EncryptionCodec.from_spec(key_spec("k2")).decode([stored])


@pytest.mark.parametrize("where", [0, 12, -1])
async def test_any_altered_byte_is_refused(where: int) -> None:
    codec = EncryptionCodec.from_spec(key_spec("k1"))
    (stored,) = await codec.encode([clear('"pay Ada 10 EUR"')])
    data = bytearray(stored.data)
    data[where] ^= 0x01
    tampered = Payload(metadata=dict(stored.metadata), data=bytes(data))
    with pytest.raises(PayloadDecryptionError, match="altered"):
        await codec.decode([tampered])


async def test_relabelling_a_payload_to_another_key_or_truncating_it_is_refused() -> None:
    spec = key_spec("a", "b")
    codec = EncryptionCodec.from_spec(spec)
    (stored,) = await codec.encode([clear('"x"')])
    relabelled = Payload(metadata={"encoding": ENCODING, KEY_ID: b"b"}, data=stored.data)
    with pytest.raises(PayloadDecryptionError):
        await codec.decode([relabelled])
    for data in (b"", stored.data[:5], stored.data[:20]):
        with pytest.raises(PayloadDecryptionError):
            await codec.decode([Payload(metadata=dict(stored.metadata), data=data)])


async def test_payloads_without_the_encrypted_encoding_pass_through_unchanged() -> None:
    codec = EncryptionCodec.from_spec(key_spec("k1"))
    older = [clear('{"user_id": "u-1"}'), Payload(metadata={"encoding": b"binary/null"})]
    assert await codec.decode(older) == older


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("", "must be"),
        ("nokey", "must be"),
        (":" + base64.b64encode(b"k" * 32).decode(), "must be"),
        ("k1:not base64!", "not valid base64"),
        ("k1:" + base64.b64encode(b"short").decode(), "5 bytes"),
        (
            "k1:"
            + base64.b64encode(b"k" * 32).decode()
            + ",k1:"
            + base64.b64encode(b"j" * 32).decode(),
            "twice",
        ),
    ],
)
def test_a_malformed_key_list_is_refused_without_quoting_the_keys(spec: str, problem: str) -> None:
    with pytest.raises(PayloadKeyError, match=problem):
        parse_payload_keys(spec)
    with pytest.raises(InsecureSettings) as refused:
        Settings(payload_keys=spec)
    assert problem in str(refused.value)
    for part in spec.replace(",", ":").split(":"):
        if len(part) > 8:
            assert part not in str(refused.value)


def test_the_development_key_works_and_production_refuses_it() -> None:
    assert list(parse_payload_keys(DEVELOPMENT_PAYLOAD_KEYS)) == ["dev"]
    with pytest.raises(InsecureSettings, match="HERALD_PAYLOAD_KEYS"):
        Settings(env="production")
    real = Settings(
        env="production",
        payload_keys=key_spec("k1"),
        sms_auth_token="s",
        push_token="p",
        unsubscribe_secret="u",
        secrets_keys=key_spec("k9"),
    )
    assert "HERALD_PAYLOAD_KEYS" not in repr(real)
    assert real.payload_keys.get_secret_value() not in repr(real)


def test_production_refuses_an_anonymous_codec_endpoint() -> None:
    with pytest.raises(InsecureSettings, match="HERALD_CODEC_ALLOW_ANONYMOUS"):
        Settings(
            env="production",
            payload_keys=key_spec("k1"),
            sms_auth_token="s",
            push_token="p",
            unsubscribe_secret="u",
            secrets_keys=key_spec("k9"),
            codec_allow_anonymous=True,
        )


def test_herald_dev_points_the_temporal_ui_at_the_codec_endpoint() -> None:
    endpoint = "http://127.0.0.1:8000/codec"
    command = TemporalDevServer(Path("/tmp/t.db"), ui_codec_endpoint=endpoint).command()
    assert command[command.index("--ui-codec-endpoint") + 1] == endpoint
    headless = TemporalDevServer(Path("/tmp/t.db"), headless=True, ui_codec_endpoint=endpoint)
    assert "--ui-codec-endpoint" not in headless.command()

    api = ManagedProcess("api", ["herald", "api"], {}, Path("/tmp"))
    console_env(api, Settings(), {})
    assert api.env["HERALD_CODEC_ALLOW_ANONYMOUS"] == "true"
