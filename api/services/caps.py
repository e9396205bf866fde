"""Per-tenant caps on what a tenant creates (keys, webhook endpoints, topics, template
keys): past the cap, creating one more is a ``409``.

The count runs inside the creating transaction after locking the tenant's row, so two
creations racing for the last place are serialized: the second counts the first.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from api.errors import ApiError
from herald.db import Tenant


async def within_cap(
    conn: AsyncConnection,
    tenant_id: uuid.UUID,
    counted: Select[Any],
    *,
    cap: int,
    what: str,
    setting: str,
) -> None:
    """409 if the tenant already has ``cap`` of the rows ``counted`` selects (one per
    thing, e.g. ``select(Topic.key).where(...)``); ``what`` names them in the answer,
    ``setting`` is the environment variable that sets the cap."""
    await conn.execute(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update())
    count = (
        await conn.execute(select(func.count()).select_from(counted.limit(cap).subquery()))
    ).scalar_one()
    if count >= cap:
        raise ApiError(
            409,
            f"this tenant already has {cap} {what}, the most it may have ({setting}); "
            "remove one first",
        )
