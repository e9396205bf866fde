"""``/v1/topics``: named audiences for broadcasts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from api.deps import EngineDep, ManageTenantDep, ReadTenantDep, SettingsDep
from api.schemas.topics import SubscribersAdded, SubscribersIn, TopicIn, TopicOut, TopicPage
from api.services import topics
from herald.contracts import Text, TopicKey, UserId

router = APIRouter(prefix="/v1/topics", tags=["topics"])
KeyPath = Annotated[TopicKey, Path(description="The topic's key, chosen by the client.")]


@router.put("/{key}", responses={201: {"description": "Created"}})
async def put_topic(
    key: KeyPath,
    engine: EngineDep,
    settings: SettingsDep,
    tenant: ManageTenantDep,
    response: Response,
    body: TopicIn | None = None,
) -> TopicOut:
    """Create the topic (201), or rename it (200)."""
    topic, created = await topics.put_topic(
        engine, tenant.id, key, body or TopicIn(), max_topics=settings.max_topics
    )
    response.status_code = 201 if created else 200
    return topic


@router.get("")
async def list_topics(
    engine: EngineDep,
    tenant: ReadTenantDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[Text | None, Query(max_length=512)] = None,
) -> TopicPage:
    """The tenant's topics by key, with their subscriber counts."""
    return await topics.list_topics(engine, tenant.id, limit=limit, cursor=cursor)


@router.get("/{key}")
async def get_topic(key: KeyPath, engine: EngineDep, tenant: ReadTenantDep) -> TopicOut:
    """The topic with its subscriber count."""
    return await topics.get_topic(engine, tenant.id, key)


@router.post("/{key}/subscribers")
async def subscribe(
    key: KeyPath, body: SubscribersIn, engine: EngineDep, tenant: ManageTenantDep
) -> SubscribersAdded:
    """Subscribe up to 10,000 users; those subscribed already are left as they are."""
    return await topics.subscribe(engine, tenant.id, key, body.user_ids)


@router.delete("/{key}/subscribers/{user_id}", status_code=204)
async def unsubscribe(
    key: KeyPath, user_id: Annotated[UserId, Path()], engine: EngineDep, tenant: ManageTenantDep
) -> None:
    """Unsubscribe one user (also when they were not subscribed)."""
    await topics.unsubscribe(engine, tenant.id, key, user_id)
