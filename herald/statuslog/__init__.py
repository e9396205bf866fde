"""The append-only status log: every write is keyed, so a retried write is a no-op.

Split by what it writes: ``events`` (every status transition), ``receipts`` (delivery
receipts and reports) and ``accepted`` (a new notification's row, one or many), all
built from the pieces in ``log`` (append the event, offer it to webhooks, move the
current status). Each public write is one statement.
"""

from herald.statuslog.accepted import record_accepted, record_accepted_many, write_accepted
from herald.statuslog.events import acceptance, record_event, recorded_acceptance
from herald.statuslog.log import count_receipt_change
from herald.statuslog.receipts import (
    record_message_receipt,
    record_receipt,
    reports_by_message_id,
)

__all__ = [
    "acceptance",
    "count_receipt_change",
    "record_accepted",
    "record_accepted_many",
    "record_event",
    "record_message_receipt",
    "record_receipt",
    "recorded_acceptance",
    "reports_by_message_id",
    "write_accepted",
]
