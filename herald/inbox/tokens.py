"""User tokens: what an end user's browser presents to the inbox routes.

A token is a JWT (HS256) signed with the tenant's inbox secret
(``tenant_inbox_secrets``), naming the tenant (``tid``), the user (``sub``), whether a
test key issued it (``test``) and when it expires (``exp``). Rotating the secret
(``rotate_secret``) makes every token issued before it fail verification.

A token is never an API key and an API key never a token: API keys are looked up by
their SHA-256 (a token matches none), and only these signed tokens pass ``verify``.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import jwt
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

AUDIENCE: Final = "herald-inbox"
ALGORITHM: Final = "HS256"
DEFAULT_TTL_SECONDS: Final = 3600
MIN_TTL_SECONDS: Final = 60
MAX_TTL_SECONDS: Final = 7 * 24 * 3600
# Longer than any token this API issues (a few hundred bytes): refused unread.
MAX_TOKEN_LENGTH: Final = 2048


class InvalidToken(Exception):
    """Not a valid, unexpired user token of a known tenant; the message says why."""


@dataclass(frozen=True)
class InboxUser:
    """Whose inbox a request reads: the tenant, the user and whether it is the test one."""

    tenant: uuid.UUID
    user_id: str
    test: bool = False


_ENSURE = text(
    """
    INSERT INTO tenant_inbox_secrets (tenant, secret) VALUES (:tenant, :secret)
    ON CONFLICT (tenant) DO NOTHING
    """
)
_SECRET = text("SELECT secret FROM tenant_inbox_secrets WHERE tenant = :tenant")
_ROTATE = text(
    """
    INSERT INTO tenant_inbox_secrets (tenant, secret) VALUES (:tenant, :secret)
    ON CONFLICT (tenant) DO UPDATE SET secret = excluded.secret, rotated_at = now()
    """
)


def _new_secret() -> str:
    return secrets.token_urlsafe(32)


async def tenant_secret(conn: AsyncConnection, tenant: uuid.UUID) -> str:
    """The tenant's inbox secret, made on first use."""
    await conn.execute(_ENSURE, {"tenant": tenant, "secret": _new_secret()})
    secret: str = (await conn.execute(_SECRET, {"tenant": tenant})).scalar_one()
    return secret


async def rotate_secret(conn: AsyncConnection, tenant: uuid.UUID) -> None:
    """Replace the tenant's inbox secret: every user token issued so far stops working."""
    await conn.execute(_ROTATE, {"tenant": tenant, "secret": _new_secret()})


def sign(
    secret: str, user: InboxUser, ttl_seconds: int, now: datetime | None = None
) -> tuple[str, datetime]:
    """A token for ``user`` valid for ``ttl_seconds``, and when it expires."""
    issued = (now or datetime.now(UTC)).replace(microsecond=0)
    expires = issued + timedelta(seconds=ttl_seconds)
    claims = {
        "aud": AUDIENCE,
        "tid": str(user.tenant),
        "sub": user.user_id,
        "test": user.test,
        "iat": issued,
        "exp": expires,
        "jti": secrets.token_urlsafe(8),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM), expires


def tenant_of(token: str) -> uuid.UUID:
    """The tenant a token claims to be for (unverified: it picks the secret to check)."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("not a user token")
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("not a user token")
        return uuid.UUID(str(claims["tid"]))
    except (jwt.InvalidTokenError, KeyError, ValueError, TypeError) as err:
        raise InvalidToken("not a user token") from err


def verify(token: str, secret: str) -> InboxUser:
    """The user a token signed with ``secret`` names, if it is valid now."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"require": ["exp", "sub", "tid", "aud"]},
        )
    except jwt.ExpiredSignatureError as err:
        raise InvalidToken("user token expired") from err
    except jwt.InvalidTokenError as err:
        raise InvalidToken("invalid user token") from err
    sub, test = claims["sub"], claims.get("test", False)
    if not isinstance(sub, str) or not sub or not isinstance(test, bool):
        raise InvalidToken("invalid user token")
    return InboxUser(tenant=uuid.UUID(str(claims["tid"])), user_id=sub, test=test)


async def authenticate(conn: AsyncConnection, token: str) -> InboxUser:
    """The user a token names, checked against its tenant's current secret."""
    tenant = tenant_of(token)
    secret = (await conn.execute(_SECRET, {"tenant": tenant})).scalar()
    if secret is None:
        raise InvalidToken("invalid user token")
    return verify(token, secret)
