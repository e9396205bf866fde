"""Encryption of every payload Herald puts in Temporal (AES-256-GCM, rotatable keys).

Workflow inputs, activity results, signals and memos carry addresses, rendered bodies
and request data; the Temporal server and its database only ever see them encrypted.
Keys come from ``HERALD_PAYLOAD_KEYS`` (``kid1:base64key,kid2:base64key``): the first
encrypts, every one decrypts, so a new key is rolled out by putting it first and the
old one stays until no running history needs it. Each encrypted payload names its key
in its metadata (``encryption-key-id``). A payload without the encrypted encoding is
passed through as it is: histories recorded before the codec still replay.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

# Re-exported: the key-list parsing lives in herald/keyring.py (no Temporal import).
from herald.keyring import DEVELOPMENT_PAYLOAD_KEYS as DEVELOPMENT_PAYLOAD_KEYS
from herald.keyring import DEVELOPMENT_SECRETS_KEYS as DEVELOPMENT_SECRETS_KEYS
from herald.keyring import KEY_BYTES as KEY_BYTES
from herald.keyring import NONCE_BYTES as NONCE_BYTES
from herald.keyring import PayloadKeyError as PayloadKeyError
from herald.keyring import parse_payload_keys as parse_payload_keys

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"


class PayloadDecryptionError(ValueError):
    """An encrypted payload that cannot be decrypted: an unknown key id, or its bytes were
    changed (the GCM tag does not match)."""


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over whole serialized payloads (their metadata included), keyed by id.

    The key id is also the associated data, so a payload cannot be relabelled to another
    key without the tag failing.
    """

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        if not keys:
            raise PayloadKeyError("at least one payload key is needed")
        self._ciphers = {kid: AESGCM(key) for kid, key in keys.items()}
        self._current = next(iter(keys))

    @classmethod
    def from_spec(cls, spec: str) -> EncryptionCodec:
        """A codec for a ``HERALD_PAYLOAD_KEYS`` value."""
        return cls(parse_payload_keys(spec))

    @property
    def current_key_id(self) -> str:
        """The id of the key new payloads are encrypted with."""
        return self._current

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Encrypt each payload with the current key."""
        return [self.encrypt(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Decrypt each encrypted payload; pass any other through unchanged."""
        return [self.decrypt(payload) for payload in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        """One payload, encrypted with the current key."""
        kid = self._current.encode()
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._current].encrypt(nonce, payload.SerializeToString(), kid)
        return Payload(metadata={"encoding": ENCODING, KEY_ID: kid}, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        """One payload in the clear (as it is if it was never encrypted)."""
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        raw_kid = payload.metadata.get(KEY_ID, b"")
        kid = raw_kid.decode("utf-8", "replace")
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise PayloadDecryptionError(
                f"payload encrypted with key id {kid!r}, which HERALD_PAYLOAD_KEYS lacks"
            )
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            clear = cipher.decrypt(nonce, sealed, raw_kid)
        except (InvalidTag, ValueError):
            raise PayloadDecryptionError(
                f"payload encrypted with key id {kid!r} does not decrypt: altered or truncated"
            ) from None
        decoded = Payload()
        decoded.ParseFromString(clear)
        return decoded
