"""Recipients and their push devices."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import RowMapping, delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from api.errors import ApiError, not_found
from api.pagination import decode_cursor, encode_cursor
from api.schemas.users import (
    DeviceIn,
    DeviceList,
    DeviceOut,
    Preferences,
    UserCreate,
    UserFields,
    UserOut,
    UserPage,
)
from herald.db import Device, User

_USERS = User.__table__
# What PUT replaces whether the body names it or not.
_CONTACT = ("email", "phone", "chat", "locale", "timezone")
_FLAGS = ("email", "sms", "push", "inapp", "chat")


def _user_out(row: RowMapping) -> UserOut:
    return UserOut.model_validate(dict(row))


def _columns(fields: UserFields) -> dict[str, object]:
    return {
        "email": fields.email,
        "phone": fields.phone,
        "chat": fields.chat,
        "locale": fields.locale,
        "timezone": fields.timezone,
        "preferences": fields.preferences.model_dump(mode="json"),
        "quiet_hours": fields.quiet_hours.model_dump() if fields.quiet_hours else None,
    }


async def create_user(engine: AsyncEngine, tenant_id: uuid.UUID, user: UserCreate) -> UserOut:
    """A new recipient; an id already taken is a 409."""
    async with engine.begin() as conn:
        row = (
            (
                await conn.execute(
                    insert(User)
                    .values(tenant_id=tenant_id, id=user.id, **_columns(user))
                    .on_conflict_do_nothing()
                    .returning(*_USERS.c)
                )
            )
            .mappings()
            .first()
        )
    if row is None:
        raise ApiError(409, f"user {user.id!r} already exists; PUT /v1/users/{user.id} replaces it")
    return _user_out(row)


async def get_user(engine: AsyncEngine, tenant_id: uuid.UUID, user_id: str) -> UserOut:
    """One recipient of this tenant."""
    async with engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    select(_USERS).where(User.tenant_id == tenant_id, User.id == user_id)
                )
            )
            .mappings()
            .first()
        )
    if row is None:
        raise not_found(f"user {user_id!r}")
    return _user_out(row)


def _preferences(stored: dict[str, Any], given: Preferences, *, merge: bool) -> dict[str, Any]:
    """The preferences after a PUT (``merge=False``) or PATCH that names ``given``.

    PUT sets all three channel flags; PATCH only those named. Category opt-outs change
    only when ``categories`` is named: PUT replaces them, PATCH merges per category and
    channel. So a one-click opt-out survives any update that does not name it.
    """
    result = dict(stored)
    named = given.model_fields_set
    for flag in _FLAGS:
        if flag in named or not merge:
            result[flag] = getattr(given, flag)
    if "categories" in named:
        categories: dict[str, dict[str, bool]] = {}
        if merge:
            categories = {
                name: dict(choices) for name, choices in stored.get("categories", {}).items()
            }
        for name, choices in given.categories.items():
            categories.setdefault(name, {}).update({c.value: v for c, v in choices.items()})
        result["categories"] = categories
    if not result.get("categories"):
        # As the API shows users without category choices (see Preferences).
        result.pop("categories", None)
    return result


def _changes(stored: dict[str, Any], fields: UserFields, *, merge: bool) -> dict[str, object]:
    """The columns a PUT (``merge=False``) or PATCH of ``fields`` sets: contact fields
    always on PUT, named ones on PATCH; preferences and quiet hours only when named."""
    named = fields.model_fields_set
    columns = _columns(fields)
    changes = {name: columns[name] for name in _CONTACT if name in named or not merge}
    if "quiet_hours" in named:
        changes["quiet_hours"] = columns["quiet_hours"]
    if "preferences" in named:
        changes["preferences"] = _preferences(stored, fields.preferences, merge=merge)
    return changes


async def _update_user(
    engine: AsyncEngine, tenant_id: uuid.UUID, user_id: str, fields: UserFields, *, merge: bool
) -> UserOut:
    async with engine.begin() as conn:
        # Locked until the update commits: an opt-out arriving meanwhile (POST /u/{token})
        # waits and applies to the new preferences instead of being overwritten.
        stored = (
            await conn.execute(
                select(User.preferences)
                .where(User.tenant_id == tenant_id, User.id == user_id)
                .with_for_update()
            )
        ).scalar_one_or_none()
        if stored is None:
            raise not_found(f"user {user_id!r}")
        row = (
            (
                await conn.execute(
                    update(User)
                    .where(User.tenant_id == tenant_id, User.id == user_id)
                    .values(**_changes(stored, fields, merge=merge), updated_at=datetime.now(UTC))
                    .returning(*_USERS.c)
                )
            )
            .mappings()
            .one()
        )
    return _user_out(row)


async def replace_user(
    engine: AsyncEngine, tenant_id: uuid.UUID, user_id: str, fields: UserFields
) -> UserOut:
    """Replace an existing recipient's contact fields; its preferences, category opt-outs
    and quiet hours change only when the body names them."""
    return await _update_user(engine, tenant_id, user_id, fields, merge=False)


async def update_user(
    engine: AsyncEngine, tenant_id: uuid.UUID, user_id: str, fields: UserFields
) -> UserOut:
    """Change only what the body names; preferences merge per flag, category and channel."""
    return await _update_user(engine, tenant_id, user_id, fields, merge=True)


async def delete_user(engine: AsyncEngine, tenant_id: uuid.UUID, user_id: str) -> None:
    """Delete a recipient and its devices; later notifications to it are suppressed."""
    async with engine.begin() as conn:
        deleted = await conn.execute(
            delete(User).where(User.tenant_id == tenant_id, User.id == user_id)
        )
    if deleted.rowcount == 0:
        raise not_found(f"user {user_id!r}")


async def add_device(
    engine: AsyncEngine, tenant_id: uuid.UUID, user_id: str, device: DeviceIn
) -> DeviceOut:
    """Register a push token (registering the same token again is harmless)."""
    await get_user(engine, tenant_id, user_id)
    async with engine.begin() as conn:
        await conn.execute(
            insert(Device)
            .values(tenant_id=tenant_id, user_id=user_id, **device.model_dump())
            .on_conflict_do_update(
                index_elements=["tenant_id", "user_id", "token"],
                set_={"platform": device.platform},
            )
        )
        row = (
            (
                await conn.execute(
                    select(Device.id, Device.token, Device.platform, Device.created_at).where(
                        Device.tenant_id == tenant_id,
                        Device.user_id == user_id,
                        Device.token == device.token,
                    )
                )
            )
            .mappings()
            .one()
        )
    return DeviceOut.model_validate(dict(row))


def _prefix_pattern(text: str) -> str:
    """A LIKE pattern matching values that start with ``text`` (wildcards taken literally)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}%"


async def list_users(
    engine: AsyncEngine,
    tenant_id: uuid.UUID,
    *,
    search: str | None,
    limit: int,
    cursor: str | None,
) -> UserPage:
    """Recipients by id, optionally those whose id or email starts with ``search``."""
    query = select(_USERS).where(User.tenant_id == tenant_id)
    if search:
        pattern = _prefix_pattern(search)
        query = query.where(
            or_(User.id.ilike(pattern, escape="\\"), User.email.ilike(pattern, escape="\\"))
        )
    if cursor is not None:
        (after,) = decode_cursor(cursor, str)
        query = query.where(User.id > after)
    query = query.order_by(User.id).limit(limit + 1)
    async with engine.connect() as conn:
        rows = [_user_out(row) for row in (await conn.execute(query)).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return UserPage(items=rows, next_cursor=encode_cursor(rows[-1].id) if more else None)


async def list_devices(engine: AsyncEngine, tenant_id: uuid.UUID, user_id: str) -> DeviceList:
    """The push devices registered for one recipient of this tenant."""
    await get_user(engine, tenant_id, user_id)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(Device.id, Device.token, Device.platform, Device.created_at)
                .where(Device.tenant_id == tenant_id, Device.user_id == user_id)
                .order_by(Device.created_at, Device.id)
            )
        ).mappings()
        return DeviceList(items=[DeviceOut.model_validate(dict(row)) for row in rows])
