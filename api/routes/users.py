"""``/v1/users``: recipients and their devices."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from api.admin_schemas import DeviceList, UserPage
from api.deps import EngineDep, TenantDep
from api.schemas import DeviceIn, DeviceOut, UserCreate, UserFields, UserOut
from api.services import users

router = APIRouter(prefix="/v1/users", tags=["users"])
UserPath = Annotated[str, Path(min_length=1, max_length=128)]


@router.post("", status_code=201)
async def create_user(body: UserCreate, engine: EngineDep, tenant: TenantDep) -> UserOut:
    """Create a recipient under the client's own id."""
    return await users.create_user(engine, tenant.id, body)


@router.get("/{user_id}")
async def get_user(user_id: UserPath, engine: EngineDep, tenant: TenantDep) -> UserOut:
    """Read a recipient."""
    return await users.get_user(engine, tenant.id, user_id)


@router.put("/{user_id}")
async def replace_user(
    user_id: UserPath, body: UserFields, engine: EngineDep, tenant: TenantDep
) -> UserOut:
    """Replace a recipient's contact points and preferences."""
    return await users.replace_user(engine, tenant.id, user_id, body)


@router.delete("/{user_id}", status_code=204)
async def delete_user(user_id: UserPath, engine: EngineDep, tenant: TenantDep) -> Response:
    """Delete a recipient and its devices."""
    await users.delete_user(engine, tenant.id, user_id)
    return Response(status_code=204)


@router.post("/{user_id}/devices", status_code=201)
async def add_device(
    user_id: UserPath, body: DeviceIn, engine: EngineDep, tenant: TenantDep
) -> DeviceOut:
    """Register a push token for the user."""
    return await users.add_device(engine, tenant.id, user_id, body)


@router.get("")
async def list_users(
    engine: EngineDep,
    tenant: TenantDep,
    search: Annotated[
        str | None, Query(max_length=128, description="Id or email starts with this.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> UserPage:
    """Recipients by id, optionally only those whose id or email starts with ``search``."""
    return await users.list_users(engine, tenant.id, search=search, limit=limit, cursor=cursor)


@router.get("/{user_id}/devices")
async def list_devices(user_id: UserPath, engine: EngineDep, tenant: TenantDep) -> DeviceList:
    """The user's registered push devices."""
    return await users.list_devices(engine, tenant.id, user_id)
