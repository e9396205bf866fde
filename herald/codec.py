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

import base64
import binascii
import os
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # GCM's standard nonce; random per payload

# A key anyone can read in this file: it keeps development working out of the box, and
# the production guard (herald/settings.py) refuses to start with it.
DEVELOPMENT_PAYLOAD_KEYS = "dev:" + base64.b64encode(b"herald development payload key!!").decode()
# The same for integration credentials at rest (``HERALD_SECRETS_KEYS``, herald/secretbox.py).
DEVELOPMENT_SECRETS_KEYS = "dev:" + base64.b64encode(b"herald development secrets key!!").decode()


class PayloadKeyError(Exception):
    """``HERALD_PAYLOAD_KEYS`` is not a list of ``kid:base64-of-32-bytes``. (Not a
    ValueError, whose pydantic message would quote the keys.)"""


class PayloadDecryptionError(ValueError):
    """An encrypted payload that cannot be decrypted: an unknown key id, or its bytes were
    changed (the GCM tag does not match)."""


def parse_payload_keys(spec: str, setting: str = "HERALD_PAYLOAD_KEYS") -> dict[str, bytes]:
    """``kid1:base64key,kid2:base64key`` → ``{kid: key}`` in order (the first encrypts);
    ``setting`` names the variable in errors (``HERALD_SECRETS_KEYS`` takes the same form)."""
    keys: dict[str, bytes] = {}
    for entry in spec.split(","):
        kid, sep, encoded = entry.strip().partition(":")
        kid = kid.strip()
        if not sep or not kid:
            raise PayloadKeyError(f"{setting} must be 'kid:base64key[,kid:base64key...]'")
        if kid in keys:
            raise PayloadKeyError(f"{setting} names key id {kid!r} twice")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise PayloadKeyError(f"{setting}: key {kid!r} is not valid base64") from None
        if len(key) != KEY_BYTES:
            raise PayloadKeyError(
                f"{setting}: key {kid!r} is {len(key)} bytes; AES-256 needs "
                f"{KEY_BYTES} (make one with: head -c 32 /dev/urandom | base64)"
            )
        keys[kid] = key
    return keys


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
