"""The recipient lookup on a real PostgreSQL: it returns the user's quiet hours and
timezone with the address, and suppresses a template's category the user opted out of
(the template named by the lookup or found through the notification)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.recipients import RecipientActivities
from herald.contracts import Channel, QuietHours, RecipientLookup
from herald.db import make_engine
from herald.settings import Settings
from herald.tenants import tenant_by_name
from tests.harness import Tenant, wait_for_status


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    made = make_engine(settings, pool_size=2)
    yield made
    await made.dispose()


async def _tenant_id(engine: AsyncEngine, tenant: Tenant) -> uuid.UUID:
    found = await tenant_by_name(engine, tenant.name)
    assert found is not None
    return found.id


async def _template(tenant: Tenant, category: str) -> str:
    key = f"t-{uuid.uuid4().hex[:8]}"
    answer = await tenant.client.post(
        "/v1/templates",
        json={"key": key, "channel": "email", "subject": "S", "body": "B", "category": category},
    )
    assert answer.status_code == 201, answer.text
    return key


async def test_the_lookup_returns_quiet_hours_and_timezone(
    tenant: Tenant, engine: AsyncEngine
) -> None:
    user = await tenant.user(
        timezone="America/New_York", quiet_hours={"start": "22:00", "end": "08:00"}
    )
    plain = await tenant.user()
    lookup = RecipientActivities(engine).load_recipient
    tenant_id = await _tenant_id(engine, tenant)

    found = await lookup(RecipientLookup(tenant_id=tenant_id, user_id=user["id"], channel="email"))
    without = await lookup(
        RecipientLookup(tenant_id=tenant_id, user_id=plain["id"], channel=Channel.email)
    )

    assert found.address == user["email"]
    assert found.quiet_hours == QuietHours(start="22:00", end="08:00")
    assert found.timezone == "America/New_York"
    assert (without.quiet_hours, without.timezone) == (None, None)


async def test_the_lookup_suppresses_an_opted_out_category_and_names_the_preference(
    tenant: Tenant, engine: AsyncEngine
) -> None:
    user = await tenant.user(preferences={"categories": {"marketing": {"email": False}}})
    marketing = await _template(tenant, "marketing")
    receipts = await _template(tenant, "transactional")
    lookup = RecipientActivities(engine).load_recipient
    tenant_id = await _tenant_id(engine, tenant)

    def asking(template: str, channel: Channel = Channel.email) -> RecipientLookup:
        return RecipientLookup(
            tenant_id=tenant_id, user_id=user["id"], channel=channel, template=template
        )

    stopped = await lookup(asking(marketing))
    assert stopped.address is None
    assert stopped.suppressed_reason == (
        "user opted out of marketing on email (preferences.categories.marketing.email)"
    )
    assert stopped.category == "marketing"
    assert (await lookup(asking(receipts))).address == user["email"]


async def test_the_category_is_found_through_the_notification_when_not_named(
    tenant: Tenant, engine: AsyncEngine
) -> None:
    user = await tenant.user(preferences={"categories": {"marketing": {"email": False}}})
    marketing = await _template(tenant, "marketing")
    nid = await tenant.send("email", user["id"], marketing)
    await wait_for_status(tenant.client, nid)
    tenant_id = await _tenant_id(engine, tenant)

    found = await RecipientActivities(engine).load_recipient(
        RecipientLookup(
            tenant_id=tenant_id,
            user_id=user["id"],
            channel=Channel.email,
            notification_id=uuid.UUID(nid),
        )
    )

    assert found.suppressed_reason is not None
    assert "preferences.categories.marketing.email" in found.suppressed_reason
