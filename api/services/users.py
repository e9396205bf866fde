"""Recipients and their push devices."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import RowMapping, delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from api.errors import ApiError, not_found
from api.schemas import DeviceIn, DeviceOut, UserCreate, UserFields, UserOut
from herald.db import Device, User

_USERS = User.__table__


def _user_out(row: RowMapping) -> UserOut:
    return UserOut.model_validate(dict(row))


def _columns(fields: UserFields) -> dict[str, object]:
    return {
        "email": fields.email,
        "phone": fields.phone,
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


async def replace_user(
    engine: AsyncEngine, tenant_id: uuid.UUID, user_id: str, fields: UserFields
) -> UserOut:
    """Replace every field of an existing recipient."""
    async with engine.begin() as conn:
        row = (
            (
                await conn.execute(
                    update(User)
                    .where(User.tenant_id == tenant_id, User.id == user_id)
                    .values(**_columns(fields), updated_at=datetime.now(UTC))
                    .returning(*_USERS.c)
                )
            )
            .mappings()
            .first()
        )
    if row is None:
        raise not_found(f"user {user_id!r}")
    return _user_out(row)


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
