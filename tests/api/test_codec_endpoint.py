"""``/codec/decode`` and ``/codec/encode`` in process: the Temporal UI's JSON format, the
operator token (no tenant credential opens it), CORS for the UI's origin only, and clear
errors for whatever else is sent."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from api.main import create_app
from herald.codec import ENCODING, KEY_ID
from tests.api.in_process import in_process_settings

pytestmark = pytest.mark.fast

UI = "http://127.0.0.1:8233"
TOKEN = "operator-token-for-the-test"
KEYS = f"k1:{base64.b64encode(os.urandom(32)).decode()}"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def ui_payload(value: Any) -> dict[str, Any]:
    """A payload as the Temporal UI sends it."""
    return {"metadata": {"encoding": b64(b"json/plain")}, "data": b64(json.dumps(value).encode())}


@asynccontextmanager
async def codec_client(**overrides: object) -> AsyncIterator[httpx.AsyncClient]:
    """The whole API app (no lifespan: the codec needs no database or Temporal)."""
    values: dict[str, object] = {
        "payload_keys": KEYS,
        "temporal_ui_url": UI,
        "codec_token": TOKEN,
        **overrides,
    }
    app = create_app(in_process_settings(**values))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://herald.test"
    ) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_encode_then_decode_gives_back_the_payloads_in_the_uis_format() -> None:
    sent = {"payloads": [ui_payload({"email": "ada@example.com"}), ui_payload("two")]}
    async with codec_client() as client:
        encoded = await client.post("/codec/encode", json=sent, headers=bearer(TOKEN))
        assert encoded.status_code == 200, encoded.text
        payloads = encoded.json()["payloads"]
        assert len(payloads) == 2
        for payload in payloads:
            assert base64.b64decode(payload["metadata"]["encoding"]) == ENCODING
            assert base64.b64decode(payload["metadata"][KEY_ID]) == b"k1"
            assert b"ada@example.com" not in base64.b64decode(payload["data"])

        decoded = await client.post("/codec/decode", json=encoded.json(), headers=bearer(TOKEN))
        assert decoded.status_code == 200, decoded.text
        assert decoded.json() == sent

        # What is not encrypted comes back as it was (histories from before the codec).
        plain = await client.post("/codec/decode", json=sent, headers=bearer(TOKEN))
        assert plain.json() == sent
        empty = await client.post("/codec/decode", json={"payloads": []}, headers=bearer(TOKEN))
        assert empty.status_code == 200 and empty.json() == {}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        bearer("wrong"),
        bearer(TOKEN + "x"),
        bearer(""),
        {"Authorization": f"Basic {b64(TOKEN.encode())}"},
        # A tenant's API key is no operator credential: payloads are not tenant-scoped.
        bearer("hk_live_" + "a" * 40),
    ],
)
async def test_anything_but_the_operator_token_is_refused(headers: dict[str, str]) -> None:
    body = {"payloads": [ui_payload("x")]}
    async with codec_client() as client:
        for route in ("/codec/decode", "/codec/encode"):
            refused = await client.post(route, json=body, headers=headers)
            assert refused.status_code == 401, refused.text
            assert refused.headers["www-authenticate"] == "Bearer"
            assert "payloads" not in refused.json()


async def test_without_a_token_configured_the_endpoint_is_off() -> None:
    async with codec_client(codec_token=None) as client:
        off = await client.post("/codec/decode", json={"payloads": []}, headers=bearer("anything"))
        assert off.status_code == 403
        assert "HERALD_CODEC_TOKEN" in off.json()["detail"]


async def test_anonymous_mode_needs_no_token() -> None:
    async with codec_client(codec_token=None, codec_allow_anonymous=True) as client:
        answered = await client.post("/codec/decode", json={"payloads": [ui_payload(1)]})
        assert answered.status_code == 200


async def test_cors_lets_the_temporal_ui_in_and_nobody_else() -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
    }
    async with codec_client() as client:
        for origin in (UI, "http://localhost:8233"):
            allowed = await client.options("/codec/decode", headers={**preflight, "Origin": origin})
            assert allowed.status_code == 200, allowed.text
            assert allowed.headers["access-control-allow-origin"] == origin
            assert allowed.headers["access-control-allow-credentials"] == "true"
            answered = await client.post(
                "/codec/decode",
                json={"payloads": []},
                headers={"Origin": origin, **bearer(TOKEN)},
            )
            assert answered.headers["access-control-allow-origin"] == origin

        evil = await client.options(
            "/codec/decode", headers={**preflight, "Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in evil.headers
        # The rest of the API grants the UI's origin nothing.
        other = await client.options("/v1/notifications", headers={**preflight, "Origin": UI})
        assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\x00\xff\xfe",
        b'{"payloads": "nope"}',
        b'{"payloads": [{"data": "***not base64***"}]}',
        b'{"payloads": [{"metadata": {"encoding": 5}}]}',
        json.dumps({"payloads": [{"metadata": {"\u0000": "\ud800"}}]}).encode(),
        b"[" * 5000 + b"]" * 5000,
    ],
)
async def test_malformed_bodies_are_a_422_naming_payloads(body: bytes) -> None:
    async with codec_client() as client:
        for route in ("/codec/decode", "/codec/encode"):
            answered = await client.post(
                route, content=body, headers={**bearer(TOKEN), "Content-Type": "application/json"}
            )
            assert answered.status_code == 422, (route, answered.text)
            assert answered.json()["detail"][0]["loc"] == ["body", "payloads"]


async def test_payloads_it_cannot_decrypt_are_a_422_not_a_500() -> None:
    async with codec_client() as client:
        encoded = await client.post(
            "/codec/encode", json={"payloads": [ui_payload("x")]}, headers=bearer(TOKEN)
        )
        payload = encoded.json()["payloads"][0]
        data = bytearray(base64.b64decode(payload["data"]))
        data[-1] ^= 1
        tampered = {"metadata": payload["metadata"], "data": b64(bytes(data))}
        foreign = {
            "metadata": {**payload["metadata"], KEY_ID: b64(b"someone-elses")},
            "data": payload["data"],
        }
        for bad, reason in ((tampered, "altered"), (foreign, "someone-elses")):
            answered = await client.post(
                "/codec/decode", json={"payloads": [bad]}, headers=bearer(TOKEN)
            )
            assert answered.status_code == 422, answered.text
            assert reason in answered.json()["detail"][0]["msg"]


async def test_a_body_over_the_bulk_limit_is_refused() -> None:
    async with codec_client(max_bulk_request_bytes=64 * 1024) as client:
        big = {"payloads": [ui_payload("x" * 100_000)]}
        answered = await client.post("/codec/decode", json=big, headers=bearer(TOKEN))
        assert answered.status_code == 413
