"""A digest's template reads its members' data from PostgreSQL, a page at a time, when it
renders: 1,000 members of 60 KB each (60 MB, thirty times Temporal's payload limit)
render from a start that carried only the digest's id and count. A request whose own
data names a digest gets nothing of it, nor does another tenant."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import digests as digest_activities
from activities.templates import TemplateActivities
from herald.contracts import Channel, RenderedMessage, RenderRequest, workflow_id_for
from herald.db import Notification, Template, make_engine
from herald.digests import digest_data, digest_notification_id
from herald.settings import Settings
from herald.tenants import ensure_tenant
from tests.api.in_process import in_process_settings, migrated_database

pytestmark = pytest.mark.timeout(300)

MEMBERS = 1000
BLOB = "x" * 60_000
BODY = "{{ count }}:{% for item in items %}{{ item.n }}/{{ item.blob | length }},{% endfor %}"


@pytest.fixture(scope="module")
def database() -> Iterator[Settings]:
    with migrated_database(in_process_settings()) as settings:
        yield settings


@pytest.fixture(scope="module")
async def engine(database: Settings) -> AsyncIterator[AsyncEngine]:
    made = make_engine(database, pool_size=2)
    yield made
    await made.dispose()


async def members(engine: AsyncEngine, tenant_id: uuid.UUID, digest_id: uuid.UUID) -> None:
    """``MEMBERS`` requests claimed by the digest, each with 60 KB of data."""
    start = datetime.now(UTC)
    async with engine.begin() as conn:
        for page in range(0, MEMBERS, 50):
            await conn.execute(
                insert(Notification),
                [
                    {
                        "id": uuid.uuid4(),
                        "tenant_id": tenant_id,
                        "channel": "email",
                        "user_id": "ada",
                        "template": "weekly",
                        "status": "scheduled",
                        # Some share a timestamp: the pages must still be exact.
                        "created_at": start + timedelta(milliseconds=n // 3),
                        "updated_at": start,
                        "data": {"n": n, "blob": BLOB},
                        "digest_id": digest_id,
                    }
                    for n in range(page, page + 50)
                ],
            )


async def render(
    engine: AsyncEngine, settings: Settings, request: RenderRequest, notification_id: uuid.UUID
) -> RenderedMessage:
    """Render as the worker does, inside an activity of ``notification_id``'s workflow."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id=workflow_id_for(notification_id))
    activities = TemplateActivities(engine, settings)
    return await env.run(activities.render_template, request)


async def test_a_thousand_members_of_sixty_kilobytes_render_from_postgresql(
    engine: AsyncEngine, database: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = await ensure_tenant(engine, f"digest-items-{uuid.uuid4().hex[:8]}")
    other = await ensure_tenant(engine, f"digest-other-{uuid.uuid4().hex[:8]}")
    async with engine.begin() as conn:
        for owner in (tenant, other):
            await conn.execute(
                insert(Template).values(
                    tenant_id=owner.id,
                    key="weekly",
                    channel="email",
                    locale="en",
                    version=1,
                    subject="{{ count }} updates",
                    body=BODY,
                    created_at=datetime.now(UTC),
                )
            )
    digest_id = uuid.uuid4()
    await members(engine, tenant.id, digest_id)
    reads: list[int] = []
    read = digest_activities.digest_items

    async def counted(*args: object) -> list[dict[str, object]]:
        items = await read(*args)  # type: ignore[arg-type]
        reads.append(len(items))
        return items

    monkeypatch.setattr(digest_activities, "digest_items", counted)
    request = RenderRequest(
        tenant_id=tenant.id,
        template="weekly",
        channel=Channel.email,
        data=digest_data(digest_id, MEMBERS),
    )

    message = await render(engine, database, request, digest_notification_id(digest_id))
    # The same data on a notification that is not the digest's, or of another tenant.
    with pytest.raises(ApplicationError, match="items"):
        await render(engine, database, request, uuid.uuid4())
    other_tenant = await render(
        engine,
        database,
        request.model_copy(update={"tenant_id": other.id}),
        digest_notification_id(digest_id),
    )

    assert message.subject == f"{MEMBERS} updates"
    count, listed = message.body.split(":", 1)
    order = [int(item.split("/")[0]) for item in listed.rstrip(",").split(",")]
    assert count == str(MEMBERS) and "/60000," in listed
    # Every member once, oldest first (ties, accepted at the same instant, in id order).
    assert sorted(order) == list(range(MEMBERS))
    assert [n // 3 for n in order] == sorted(n // 3 for n in order)
    assert len(request.model_dump_json()) < 1000  # what Temporal carried
    assert reads == [MEMBERS, 0]  # only the digest's own notification reads its members
    assert other_tenant.body == f"{MEMBERS}:"
