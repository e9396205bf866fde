"""Delivery receipts in the status log on a real PostgreSQL: whatever order receipts and
``sent`` arrive in, twice or once, a notification ends in the same state."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from herald import statuslog
from herald.contracts import Channel, NotificationInput, Receipt, Status, StatusEvent
from herald.db import Notification, NotificationEvent, make_engine
from herald.metrics import RECEIPT_MOVES
from herald.settings import Settings
from herald.tenants import ensure_tenant

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    made = make_engine(settings, pool_size=4)
    yield made
    await made.dispose()


async def _notification(engine: AsyncEngine, channel: Channel = Channel.sms) -> uuid.UUID:
    """A notification that is ``sending`` (accepted and handed to the provider)."""
    tenant = await ensure_tenant(engine, f"receipts-{uuid.uuid4().hex[:8]}")
    request = NotificationInput(
        notification_id=uuid.uuid4(),
        tenant_id=tenant.id,
        channel=channel,
        user_id="ada",
        template="welcome",
        created_at=T0,
    )
    await statuslog.record_accepted(engine, request)
    await statuslog.record_event(
        engine,
        StatusEvent(
            notification_id=request.notification_id,
            status=Status.sending,
            attempt=1,
            at=T0 + timedelta(seconds=1),
        ),
    )
    return request.notification_id


def _sent(notification_id: uuid.UUID, provider: str, message_id: str) -> StatusEvent:
    return StatusEvent(
        notification_id=notification_id,
        status=Status.sent,
        attempt=1,
        provider=provider,
        provider_message_id=message_id,
        at=T0 + timedelta(seconds=2),
    )


def _receipt(status: Status | None, report: str, seconds: int, error: str | None = None) -> Receipt:
    return Receipt(
        status=status,
        source="twilio",
        report=report,
        at=T0 + timedelta(seconds=seconds),
        detail=f"twilio reports {report}",
        error=error,
    )


DELIVERED = _receipt(Status.delivered, "delivered", 10)
UNDELIVERED = _receipt(Status.undelivered, "undelivered", 11, "twilio undelivered: error 30003")
FAILED = _receipt(Status.undelivered, "failed", 12, "twilio failed: error 30005")


async def _state(engine: AsyncEngine, notification_id: uuid.UUID) -> tuple[str, str | None]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(Notification.status, Notification.last_error).where(
                    Notification.id == notification_id
                )
            )
        ).one()
    return row.status, row.last_error


async def _event_keys(engine: AsyncEngine, notification_id: uuid.UUID) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(NotificationEvent.event_key)
            .where(NotificationEvent.notification_id == notification_id)
            .order_by(NotificationEvent.event_key)
        )
        return [row.event_key for row in rows]


Step = Callable[[], Coroutine[Any, Any, Any]]


Moves = dict[tuple[str, str], float]


def _receipt_changes() -> Moves:
    """``herald_receipt_changes_total`` of SMS in this process, by (from, to)."""
    return {
        (old, new): REGISTRY.get_sample_value(
            "herald_receipt_changes_total",
            {"channel": "sms", "from_status": old, "to_status": new},
        )
        or 0.0
        for old, new in RECEIPT_MOVES
    }


async def _run_in_order(
    engine: AsyncEngine, receipts: list[Receipt], *, by_message_id: bool
) -> list[tuple[tuple[str, str | None], list[str], Moves]]:
    """Every order of ``sent`` and ``receipts`` on a fresh notification each: the final
    state, event keys and counted receipt changes of each run."""
    outcomes = []
    for order in itertools.permutations(range(len(receipts) + 1)):
        counted = _receipt_changes()
        nid = await _notification(engine)
        message_id = f"SM{uuid.uuid4().hex}"

        def steps(nid: uuid.UUID = nid, message_id: str = message_id) -> list[Step]:
            made: list[Step] = [
                lambda: statuslog.record_event(engine, _sent(nid, "twilio", message_id))
            ]
            for receipt in receipts:
                if by_message_id:
                    made.append(
                        lambda r=receipt: statuslog.record_message_receipt(engine, message_id, r)
                    )
                else:
                    made.append(lambda r=receipt: statuslog.record_receipt(engine, nid, 1, r))
            return made

        every = steps()
        for index in order:
            await every[index]()
        keys = [key.split(":", 1)[1] for key in await _event_keys(engine, nid)]
        moves = {move: n - counted[move] for move, n in _receipt_changes().items()}
        outcomes.append((await _state(engine, nid), keys, moves))
    return outcomes


@pytest.mark.parametrize("by_message_id", [True, False], ids=["by-message-id", "by-id"])
async def test_delivered_wins_whatever_the_order(engine: AsyncEngine, by_message_id: bool) -> None:
    outcomes = await _run_in_order(
        engine, [DELIVERED, UNDELIVERED, DELIVERED], by_message_id=by_message_id
    )

    assert {state for state, _, _ in outcomes} == {("delivered", None)}
    # Each report is logged once. (Reports naming only a message id that is not linked
    # yet wait for ``sent`` on one row, which keeps the strongest of them: an outranked
    # ``undelivered`` that came before ``sent`` is not logged then.)
    for _, keys, _ in outcomes:
        assert keys.count("receipt:twilio:delivered") == 1
        assert keys.count("receipt:twilio:undelivered") <= 1
        assert "sent:1" in keys


@pytest.mark.parametrize("by_message_id", [True, False], ids=["by-message-id", "by-id"])
async def test_undelivered_keeps_the_latest_report_whatever_the_order(
    engine: AsyncEngine, by_message_id: bool
) -> None:
    outcomes = await _run_in_order(engine, [UNDELIVERED, FAILED], by_message_id=by_message_id)

    assert {state for state, _, _ in outcomes} == {("undelivered", "twilio failed: error 30005")}


@pytest.mark.parametrize("by_message_id", [True, False], ids=["by-message-id", "by-id"])
@pytest.mark.parametrize(
    "receipts",
    [[UNDELIVERED, FAILED, UNDELIVERED], [DELIVERED, FAILED, DELIVERED]],
    ids=["undelivered-replayed", "delivered-among-undelivered"],
)
async def test_the_receipt_counter_adds_up_to_the_final_status_whatever_the_order(
    engine: AsyncEngine, receipts: list[Receipt], by_message_id: bool
) -> None:
    """What the delivery-success alert reads: in every order, with replays, the counted
    changes add up to one move out of ``sent`` into the final status, and no more."""
    outcomes = await _run_in_order(engine, receipts, by_message_id=by_message_id)

    for (status, _), _, moves in outcomes:
        into_undelivered = moves["sent", "undelivered"] - moves["undelivered", "delivered"]
        into_delivered = moves["sent", "delivered"] + moves["undelivered", "delivered"]
        assert (into_undelivered, into_delivered) == (
            (1, 0) if status == "undelivered" else (0, 1)
        ), (status, moves)
    assert {state for state, _, _ in outcomes} == {
        ("delivered", None)
        if DELIVERED in receipts
        else ("undelivered", "twilio failed: error 30005")
    }


async def test_a_receipt_before_sent_waits_for_it(engine: AsyncEngine) -> None:
    nid = await _notification(engine)
    message_id = f"SM{uuid.uuid4().hex}"

    assert await statuslog.record_message_receipt(engine, message_id, DELIVERED) is None
    assert await _state(engine, nid) == ("sending", None)

    await statuslog.record_event(engine, _sent(nid, "twilio-secondary", message_id))

    assert await _state(engine, nid) == ("delivered", None)
    assert await statuslog.record_message_receipt(engine, message_id, UNDELIVERED) == (nid, 1)
    assert await _state(engine, nid) == ("delivered", None)


async def test_a_report_that_moves_nothing_is_only_logged(engine: AsyncEngine) -> None:
    nid = await _notification(engine)
    message_id = f"SM{uuid.uuid4().hex}"
    await statuslog.record_event(engine, _sent(nid, "twilio", message_id))
    queued = _receipt(None, "queued", 5)

    assert await statuslog.record_message_receipt(engine, message_id, queued) == (nid, 1)
    assert await statuslog.record_message_receipt(engine, message_id, queued) == (nid, 1)

    assert await _state(engine, nid) == ("sent", None)
    assert (await _event_keys(engine, nid)).count("1:receipt:twilio:queued") == 1


async def test_a_receipt_of_an_earlier_cycle_does_not_move_a_resend(engine: AsyncEngine) -> None:
    nid = await _notification(engine, Channel.email)
    await statuslog.record_event(engine, _sent(nid, "smtp", f"<{nid}@herald.local>"))
    async with engine.connect() as conn:
        tenant_id = (
            await conn.execute(select(Notification.tenant_id).where(Notification.id == nid))
        ).scalar_one()
    await statuslog.record_accepted(
        engine,
        NotificationInput(
            notification_id=nid,
            tenant_id=tenant_id,
            channel=Channel.email,
            user_id="ada",
            template="welcome",
            created_at=T0 + timedelta(minutes=1),
            cycle=2,
        ),
    )

    assert await statuslog.record_receipt(engine, nid, 1, UNDELIVERED)

    assert await _state(engine, nid) == ("accepted", None)
