"""Integration credentials at rest: AES-256-GCM under ``HERALD_SECRETS_KEYS``.

The keys take ``HERALD_PAYLOAD_KEYS``' form (``kid:base64key,...``, parsed by the same
function): the first encrypts, every one decrypts, so a key is rotated by putting a new
one first and re-saving (or leaving) the rows sealed with the old one. A sealed config is
``nonce || ciphertext+tag``; its key id is stored next to it. The associated data binds
it to its tenant, its integration and its key id: a row's bytes copied onto another
tenant's or another integration's row do not decrypt.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from herald.codec import NONCE_BYTES, parse_payload_keys
from herald.settings import Settings


class SecretsError(Exception):
    """A sealed config that cannot be opened: its key id is not configured, or its bytes
    do not belong to this tenant and integration."""


def _aad(tenant_id: uuid.UUID, integration_id: uuid.UUID, kid: str) -> bytes:
    return f"herald-integration:{tenant_id}:{integration_id}:{kid}".encode()


class SecretBox:
    """Seals and opens integration configs."""

    def __init__(self, spec: str) -> None:
        keys = parse_payload_keys(spec, "HERALD_SECRETS_KEYS")
        self._ciphers = {kid: AESGCM(key) for kid, key in keys.items()}
        self.current_key_id = next(iter(keys))

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        """The box for ``HERALD_SECRETS_KEYS``."""
        return cls(settings.secrets_keys.get_secret_value())

    def seal(
        self, tenant_id: uuid.UUID, integration_id: uuid.UUID, config: Mapping[str, str]
    ) -> tuple[str, bytes]:
        """``(key id, sealed bytes)`` of ``config`` with the current key."""
        kid = self.current_key_id
        nonce = os.urandom(NONCE_BYTES)
        clear = json.dumps(dict(config), separators=(",", ":")).encode()
        sealed = self._ciphers[kid].encrypt(nonce, clear, _aad(tenant_id, integration_id, kid))
        return kid, nonce + sealed

    def open(
        self, tenant_id: uuid.UUID, integration_id: uuid.UUID, kid: str, sealed: bytes
    ) -> dict[str, str]:
        """The config ``seal`` sealed for this tenant and integration."""
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise SecretsError(f"sealed with key id {kid!r}, which HERALD_SECRETS_KEYS lacks")
        try:
            clear = cipher.decrypt(
                sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], _aad(tenant_id, integration_id, kid)
            )
        except (InvalidTag, ValueError):
            raise SecretsError(
                "sealed config does not decrypt: altered or not this row's"
            ) from None
        config: dict[str, str] = json.loads(clear)
        return config
