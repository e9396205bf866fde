"""Key lists given as ``kid1:base64key,kid2:base64key`` (``HERALD_PAYLOAD_KEYS`` for the
payload codec of herald/codec.py, ``HERALD_SECRETS_KEYS`` for herald/secretbox.py): the
first key encrypts, every one decrypts. Free of Temporal, so the settings (and the
client that reads them) load without it.
"""

from __future__ import annotations

import base64
import binascii

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
