"""``/v1/users``: recipients and their devices."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from api.deps import EngineDep, ManageTenantDep, ReadTenantDep
from api.schemas.users import (
    DeviceIn,
    DeviceList,
    DeviceOut,
    UserCreate,
    UserFields,
    UserOut,
    UserPage,
    UserPatch,
)
from api.services import users
from herald.contracts import Text

router = APIRouter(prefix="/v1/users", tags=["users"])
UserPath = Annotated[Text, Path(min_length=1, max_length=128)]


@router.post("", status_code=201)
async def create_user(body: UserCreate, engine: EngineDep, tenant: ManageTenantDep) -> UserOut:
    """Create a recipient under the client's own id."""
    return await users.create_user(engine, tenant.id, body)


@router.get("/{user_id}")
async def get_user(user_id: UserPath, engine: EngineDep, tenant: ReadTenantDep) -> UserOut:
    """Read a recipient."""
    return await users.get_user(engine, tenant.id, user_id)


@router.put("/{user_id}")
async def replace_user(
    user_id: UserPath, body: UserFields, engine: EngineDep, tenant: ManageTenantDep
) -> UserOut:
    """Replace a recipient's contact points. Preferences, category opt-outs and quiet
    hours change only when the body names them (a profile update never undoes an
    unsubscribe)."""
    return await users.replace_user(engine, tenant.id, user_id, body)


@router.patch("/{user_id}")
async def update_user(
    user_id: UserPath, body: UserPatch, engine: EngineDep, tenant: ManageTenantDep
) -> UserOut:
    """Change only the fields named; preferences merge per channel and per category."""
    return await users.update_user(engine, tenant.id, user_id, body)


@router.delete("/{user_id}", status_code=204)
async def delete_user(user_id: UserPath, engine: EngineDep, tenant: ManageTenantDep) -> Response:
    """Delete a recipient and its devices."""
    await users.delete_user(engine, tenant.id, user_id)
    return Response(status_code=204)


@router.post("/{user_id}/devices", status_code=201)
async def add_device(
    user_id: UserPath, body: DeviceIn, engine: EngineDep, tenant: ManageTenantDep
) -> DeviceOut:
    """Register a push token for the user."""
    return await users.add_device(engine, tenant.id, user_id, body)


@router.get("")
async def list_users(
    engine: EngineDep,
    tenant: ReadTenantDep,
    search: Annotated[
        Text | None, Query(max_length=128, description="Id or email starts with this.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[Text | None, Query(max_length=512)] = None,
) -> UserPage:
    """Recipients by id, optionally only those whose id or email starts with ``search``."""
    return await users.list_users(engine, tenant.id, search=search, limit=limit, cursor=cursor)


@router.get("/{user_id}/devices")
async def list_devices(user_id: UserPath, engine: EngineDep, tenant: ReadTenantDep) -> DeviceList:
    """The user's registered push devices."""
    return await users.list_devices(engine, tenant.id, user_id)
