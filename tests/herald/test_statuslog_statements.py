"""The status log's statements say exactly what they were written to say.

SQLAlchemy reads a parameter named like a column of a table that a statement inserts
into or updates, but does not set, as a value for that column (an extra ``SET cycle =
:cycle``). Each write is checked with the parameters it really passes: the SQL it
runs is the SQL it was built as.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.dialects.postgresql import asyncpg

from herald import statuslog
from herald.contracts import Channel, NotificationInput, Receipt, Status, StatusEvent
from herald.statuslog import accepted, events, receipts

pytestmark = pytest.mark.fast

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


class _Recorder:
    """A connection that keeps what it is asked to run and answers as an empty log."""

    def __init__(self) -> None:
        self.ran: list[tuple[Any, dict[str, Any]]] = []

    async def execute(self, statement: Any, params: dict[str, Any]) -> Any:
        self.ran.append((statement, params))
        row = SimpleNamespace(logged=1, channel=None, old_status=None, new_status=None)
        return SimpleNamespace(first=lambda: None, one=lambda: row, scalar_one=lambda: 1)


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> _Recorder:
    made = _Recorder()

    @asynccontextmanager
    async def connection(_engine: Any) -> AsyncIterator[_Recorder]:
        yield made

    for module in (accepted, events, receipts):
        monkeypatch.setattr(module, "single_statements", connection)
    return made


def _request(cycle: int = 1) -> NotificationInput:
    return NotificationInput(
        notification_id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        channel=Channel.sms,
        user_id="ada",
        template="welcome",
        created_at=T0,
        cycle=cycle,
        fallback=[Channel.email],
        data={"name": "Ada"},
    )


def _event(status: Status, provider: str | None = None) -> StatusEvent:
    return StatusEvent(
        notification_id=uuid.uuid4(),
        status=status,
        at=T0,
        attempt=1,
        provider=provider,
        provider_message_id="SM1" if provider else None,
        error="boom",
        leg=1,
    )


async def test_every_write_runs_the_statement_it_was_built_as(recorder: _Recorder) -> None:
    delivered = Receipt(status=Status.delivered, source="twilio", report="delivered", at=T0)
    queued = Receipt(status=None, source="twilio", report="queued", at=T0)
    engine: Any = None
    await statuslog.record_accepted(engine, _request())
    await statuslog.record_accepted(engine, _request(cycle=2))
    await statuslog.record_accepted_many(engine, [_request(), _request()])
    await statuslog.record_event(engine, _event(Status.sending))
    await statuslog.record_event(engine, _event(Status.sent, provider="twilio"))
    await statuslog.record_event(engine, _event(Status.retrying), before=_event(Status.sending))
    await statuslog.record_event(
        engine, _event(Status.sent, provider="twilio"), before=_event(Status.sending)
    )
    for receipt in (delivered, queued):
        await statuslog.record_receipt(engine, uuid.uuid4(), 1, receipt)
        await statuslog.record_message_receipt(engine, "SM1", receipt)

    dialect = asyncpg.dialect()
    assert len({id(statement) for statement, _ in recorder.ran}) == 10
    for statement, params in recorder.ran:
        built = str(statement.compile(dialect=dialect))
        run = str(statement.compile(dialect=dialect, column_keys=sorted(params)))
        assert run == built
