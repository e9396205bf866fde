"""The inbound SMTP server of ``herald bounces`` (aiosmtpd).

It accepts mail for two kinds of address only, anything else refused at RCPT with 550:

- signed VERP bounce addresses (``bounces+<notification id>.<mac>@<domain of
  HERALD_BOUNCE_ADDRESS>``, the envelope sender of every email Herald sends; see
  herald/bounce_addresses.py), and only delivery status notifications: 5.x.x makes the
  notification ``undelivered`` with the diagnostic, 4.x.x (delayed) is logged only,
  anything else is refused with 550;
- the ``List-Unsubscribe`` mailto (herald/unsubscribe.py): the signed token in the
  subject opts its user out as ``POST /u/{token}`` does; a forged one is refused with 550.

A database outage answers 451, so the sending relay tries again later.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import uuid
from datetime import UTC, datetime

from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from bounces.dsn import DeliveryStatus, cycle_of, parse_dsn
from herald import statuslog, unsubscribe
from herald.bounce_addresses import bounced_notification
from herald.contracts import Receipt, ReceiptSignal, Status
from herald.db import make_engine
from herald.receipts import tell_workflow
from herald.runtime import service
from herald.settings import Settings
from herald.submission import find_notification
from herald.temporal import connect

log = logging.getLogger(__name__)

_MAX_DSN_BYTES = 10 * 1024 * 1024


def _receipt(report: DeliveryStatus) -> Receipt:
    if report.permanent:
        return Receipt(
            status=Status.undelivered,
            source="bounce",
            report=report.status,
            at=datetime.now(UTC),
            detail=f"bounced: {report.reason}",
            error=report.reason,
        )
    return Receipt(
        status=None,
        source="bounce",
        report=f"delayed:{report.status}",
        at=datetime.now(UTC),
        detail=f"delivery delayed: {report.reason}",
    )


class BounceHandler:
    """aiosmtpd handler: RCPT checks the address, DATA reads and records the DSN."""

    def __init__(self, settings: Settings, engine: AsyncEngine, temporal: Client | None) -> None:
        self._settings = settings
        self._engine = engine
        self._temporal = temporal

    def _unsubscribe(self, address: str) -> bool:
        return address.strip().strip("<>").lower() == unsubscribe.mailbox(self._settings).lower()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        """Only signed bounce addresses of Herald notifications, or the unsubscribe
        mailbox; one message goes to one kind or the other."""
        if self._unsubscribe(address):
            kind = "unsubscribe"
        elif bounced_notification(self._settings, address) is not None:
            kind = "bounce"
        else:
            return "550 5.1.1 not a Herald bounce address"
        if envelope.rcpt_tos and self._unsubscribe(envelope.rcpt_tos[0]) != (kind == "unsubscribe"):
            return "452 4.5.3 send the unsubscribe request and bounces separately"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Opt out for an unsubscribe request; else record the DSN for each notification
        it is addressed to."""
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        if self._unsubscribe(envelope.rcpt_tos[0]):
            return await self._opt_out(content)
        reports = parse_dsn(content)
        if reports is None:
            return "550 5.6.0 not a delivery status notification"
        worst = max(reports, key=lambda r: (r.permanent, r.temporary))
        if not (worst.permanent or worst.temporary):
            return "550 5.6.0 only failure and delay reports are accepted"
        try:
            for address in envelope.rcpt_tos:
                notification_id = bounced_notification(self._settings, address)
                assert notification_id is not None  # RCPT let only these through
                if not await self._record(notification_id, worst):
                    return f"550 5.1.1 no notification {notification_id}"
        except Exception:
            log.warning("could not record a bounce; the relay will retry", exc_info=True)
            return "451 4.3.0 could not record the bounce now, try again later"
        return "250 2.0.0 bounce recorded"

    async def _opt_out(self, content: bytes) -> str:
        """The mailto of ``List-Unsubscribe``: the token is the subject's last word."""
        message = email.message_from_bytes(content, policy=email.policy.default)
        token = unsubscribe.token_in_subject(str(message.get("Subject", "")))
        claim = unsubscribe.read_token(self._settings, token) if token else None
        if claim is None:
            return "550 5.7.1 not a valid Herald unsubscribe request"
        try:
            found = await unsubscribe.opt_out(self._engine, claim)
        except Exception:
            log.warning("could not record an unsubscribe; the sender will retry", exc_info=True)
            return "451 4.3.0 could not record the unsubscribe now, try again later"
        if not found:
            return "550 5.1.1 no such recipient any more"
        log.info(
            "unsubscribed by mail",
            extra={"tenant_id": str(claim.tenant_id), "category": claim.category},
        )
        return "250 2.0.0 unsubscribed"

    async def _record(self, notification_id: uuid.UUID, report: DeliveryStatus) -> bool:
        row = await find_notification(self._engine, notification_id)
        if row is None:
            return False
        cycle = cycle_of(report.original_message_id, str(notification_id)) or row["cycle"]
        receipt = _receipt(report)
        await statuslog.record_receipt(self._engine, notification_id, cycle, receipt)
        log.info(
            "bounce recorded",
            extra={
                "notification_id": str(notification_id),
                "status_code": report.status,
                "permanent": report.permanent,
            },
        )
        if receipt.status is not None and self._temporal is not None:
            await tell_workflow(
                self._temporal,
                notification_id,
                ReceiptSignal(
                    cycle=cycle, status=receipt.status, reason=receipt.error, at=receipt.at
                ),
                engine=self._engine,
            )
        return True


async def run_bounces(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Serve SMTP on ``HERALD_BOUNCE_SMTP_HOST:PORT`` until ``stop`` (or a signal)."""
    async with service("bounce server", settings, stop) as running:
        engine = make_engine(settings, pool_size=4)
        temporal = await connect(settings, running.runtime, lazy=True)
        handler = BounceHandler(settings, engine, temporal)
        server = await asyncio.get_running_loop().create_server(
            lambda: SMTP(
                handler,
                hostname=settings.bounce_smtp_host,
                data_size_limit=_MAX_DSN_BYTES,
                enable_SMTPUTF8=True,
            ),
            host=settings.bounce_smtp_host,
            port=settings.bounce_smtp_port,
        )
        running.ready()
        log.info(
            "bounce server listening",
            extra={"host": settings.bounce_smtp_host, "port": settings.bounce_smtp_port},
        )
        try:
            await running.stop.wait()
        finally:
            server.close()
            await server.wait_closed()
            await engine.dispose()
