"""Reading RFC 3464 delivery status notifications with the standard library's ``email``.

A DSN is ``multipart/report; report-type=delivery-status``: a human-readable part, a
``message/delivery-status`` part (per-message fields, then one block per recipient with
``Action``, ``Status`` and ``Diagnostic-Code``), and usually the original message or its
headers, which carry the ``Message-ID`` Herald gave it (and so the send cycle).
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.parser import HeaderParser

_STATUS = re.compile(r"\A([245])\.\d{1,3}\.\d{1,3}\Z")


@dataclass(frozen=True)
class DeliveryStatus:
    """One recipient's block of a DSN."""

    status: str
    action: str
    diagnostic: str | None
    original_message_id: str | None

    @property
    def permanent(self) -> bool:
        """5.x.x: the message will never be delivered."""
        return self.status.startswith("5")

    @property
    def temporary(self) -> bool:
        """4.x.x: delivery is delayed; the relay keeps trying."""
        return self.status.startswith("4")

    @property
    def reason(self) -> str:
        """The status code and the remote server's diagnostic, for ``last_error``."""
        return f"{self.status} {self.diagnostic}" if self.diagnostic else self.status


def _blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    # Some parsers leave it as text: the blocks are header groups split by blank lines.
    text = payload if isinstance(payload, str) else ""
    return [HeaderParser().parsestr(chunk) for chunk in re.split(r"\r?\n\r?\n", text.strip())]


def _original_message_id(report: EmailMessage) -> str | None:
    for part in report.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                value = inner[0].get("Message-ID")
                return str(value).strip() if value else None
        elif kind == "text/rfc822-headers":
            text = part.get_payload(decode=True)
            if isinstance(text, bytes):
                value = HeaderParser().parsestr(text.decode(errors="replace")).get("Message-ID")
                return str(value).strip() if value else None
    return None


def parse_dsn(content: bytes) -> list[DeliveryStatus] | None:
    """The recipient blocks of a DSN, or None if ``content`` is not one."""
    message = email.message_from_bytes(content, policy=email.policy.default)
    if not isinstance(message, EmailMessage) or message.get_content_type() != "multipart/report":
        return None
    if str(message.get_param("report-type", "")).lower() != "delivery-status":
        return None
    status_part = next(
        (p for p in message.walk() if p.get_content_type() == "message/delivery-status"), None
    )
    if status_part is None:
        return None
    original = _original_message_id(message)
    found = []
    for block in _blocks(status_part)[1:]:  # the first block is about the message
        status = str(block.get("Status", "")).strip().split(" ", 1)[0]
        if not _STATUS.match(status):
            continue
        diagnostic = block.get("Diagnostic-Code")
        found.append(
            DeliveryStatus(
                status=status,
                action=str(block.get("Action", "")).strip().lower(),
                diagnostic=" ".join(str(diagnostic).split()) if diagnostic else None,
                original_message_id=original,
            )
        )
    return found or None


def cycle_of(message_id: str | None, notification_id: str) -> int | None:
    """The send cycle a Herald ``Message-ID`` names (``<id@…>`` is cycle 1, ``<id-N@…>``
    cycle N), or None if it is not one of this notification's."""
    if not message_id:
        return None
    local = message_id.strip().strip("<>").rpartition("@")[0]
    if local == notification_id:
        return 1
    prefix = f"{notification_id}-"
    if local.startswith(prefix) and local[len(prefix) :].isdigit():
        return int(local[len(prefix) :])
    return None
