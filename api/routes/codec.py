"""The codec endpoint of the Temporal UI and CLI: ``POST /codec/decode`` and ``/encode``.

The UI (``--ui-codec-endpoint``) and the CLI (``--codec-endpoint``) send
``{"payloads": [{"metadata": {k: base64}, "data": base64}]}`` and show what comes back,
so operators read the payloads Herald encrypts (herald/codec.py) in the clear.

Who may call it: payloads are not tenant-scoped (one key set encrypts every tenant's
notifications), so answering a tenant's API key or console session would make this
endpoint a decryption oracle for every other tenant's data, for anyone who ever got
hold of a history (a Temporal database backup, a UI viewer). It takes the operator token
``HERALD_CODEC_TOKEN`` only (``Authorization: Bearer <token>``; in production put the UI
behind the sign-in proxy that adds that header), or nothing at all when
``HERALD_CODEC_ALLOW_ANONYMOUS`` is on (``herald dev``; refused in production).

It is its own small app, mounted at ``/codec``, so that CORS for the UI's origin covers
these two routes and nothing else of the API, and it stays out of the public OpenAPI.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from api.errors import ApiError, install_error_handlers
from herald.codec import EncryptionCodec, PayloadDecryptionError
from herald.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="The operator token HERALD_CODEC_TOKEN")
_LOOPBACK = ("127.0.0.1", "localhost")


def ui_origins(ui_url: str) -> list[str]:
    """The origins the Temporal UI at ``ui_url`` calls from (both loopback spellings of a
    local one: a developer may open either)."""
    parts = urlsplit(ui_url)
    origins = [f"{parts.scheme}://{parts.netloc}"]
    if parts.hostname in _LOOPBACK:
        for alias in _LOOPBACK:
            if alias != parts.hostname:
                port = f":{parts.port}" if parts.port else ""
                origins.append(f"{parts.scheme}://{alias}{port}")
    return origins


def _operator_check(settings: Settings) -> Callable[..., Awaitable[None]]:
    """A dependency that lets only the operator through (see the module docstring)."""
    token = settings.codec_token.get_secret_value().encode() if settings.codec_token else None

    async def operator(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        if settings.codec_allow_anonymous:
            return
        if token is None:
            raise ApiError(403, "the codec endpoint is off: set HERALD_CODEC_TOKEN to use it")
        given = credentials.credentials.encode() if credentials is not None else b""
        if not hmac.compare_digest(given, token):
            raise ApiError(
                401,
                "the codec endpoint needs 'Authorization: Bearer <HERALD_CODEC_TOKEN>'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return operator


async def _payloads_of(request: Request) -> list[Payload]:
    """The request's payloads, in Temporal's JSON form (422 if it is not that)."""
    try:
        parsed = json_format.Parse(await request.body(), Payloads(), ignore_unknown_fields=True)
    except (json_format.ParseError, UnicodeDecodeError, ValueError) as err:
        # The parser's message may quote the input: keep it short.
        shape = '{"payloads": [{"metadata": {...}, "data": "<base64>"}]}'
        raise ApiError(422, f"expected {shape}: {str(err)[:200]}", field="payloads") from None
    return list(parsed.payloads)


def _answer(payloads: Sequence[Payload]) -> Response:
    return Response(
        json_format.MessageToJson(Payloads(payloads=payloads)), media_type="application/json"
    )


def create_codec_app(settings: Settings, codec: EncryptionCodec | None = None) -> FastAPI:
    """The ``/codec`` app for ``settings`` (its keys, token and the UI's origin)."""
    codec = codec or EncryptionCodec.from_spec(settings.payload_keys.get_secret_value())
    router = APIRouter(tags=["codec"], dependencies=[Depends(_operator_check(settings))])

    @router.post("/decode")
    async def decode(request: Request) -> Response:
        """The payloads in the clear (unencrypted ones as they came)."""
        try:
            return _answer(await codec.decode(await _payloads_of(request)))
        except PayloadDecryptionError as err:
            raise ApiError(422, str(err), field="payloads") from None

    @router.post("/encode")
    async def encode(request: Request) -> Response:
        """The payloads encrypted with the current key (what Herald would store)."""
        return _answer(await codec.encode(await _payloads_of(request)))

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    install_error_handlers(app)
    app.include_router(router)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=ui_origins(settings.temporal_ui_url),
        allow_methods=["POST"],
        # The UI names the namespace in X-Namespace; the token comes in Authorization.
        allow_headers=["Authorization", "Content-Type", "X-Namespace"],
        allow_credentials=True,
        max_age=600,
    )
    return app
