"""What the sinks send back, as real providers do: Twilio's signed status callbacks and
RFC 3464 delivery status notifications (bounces) to the envelope sender's server."""

from __future__ import annotations

import logging
import uuid
from email.utils import formatdate, make_msgid

import aiosmtplib
import httpx
from twilio.request_validator import RequestValidator

log = logging.getLogger(__name__)


def twilio_callback(
    url: str, token: str, *, sid: str, account_sid: str, to: str, sender: str, status: str
) -> tuple[dict[str, str], dict[str, str]]:
    """The form and headers Twilio POSTs to a ``StatusCallback``.

    ``status`` is a ``MessageStatus``, optionally with an error code after a colon
    (``undelivered:30003``). ``X-Twilio-Signature`` is Twilio's: base64 HMAC-SHA1 of the
    URL followed by the sorted parameters, keyed with the auth token.
    """
    message_status, _, code = status.partition(":")
    form = {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": account_sid,
        "MessageStatus": message_status,
        "SmsStatus": message_status,
        "To": to,
        "From": sender,
        "ApiVersion": "2010-04-01",
    }
    if code:
        form["ErrorCode"] = code
    signature = RequestValidator(token).compute_signature(url, form)
    return form, {"X-Twilio-Signature": signature}


def post_twilio_callbacks(
    url: str,
    token: str,
    statuses: list[str],
    *,
    sid: str,
    account_sid: str,
    to: str,
    sender: str,
) -> None:
    """POST one signed callback per status, in order (errors are logged, as Twilio does)."""
    with httpx.Client(timeout=5) as client:
        for status in statuses:
            form, headers = twilio_callback(
                url, token, sid=sid, account_sid=account_sid, to=to, sender=sender, status=status
            )
            try:
                client.post(url, data=form, headers=headers)
            except httpx.HTTPError as err:
                log.warning("status callback to %s failed: %s", url, err)


def build_dsn(
    *,
    bounce_to: str,
    recipient: str,
    status: str,
    original_headers: bytes,
    reporting_mta: str = "sink.herald.local",
) -> bytes:
    """A delivery status notification as an MTA sends it (RFC 3464): human-readable text,
    ``message/delivery-status`` and the original message's headers."""
    permanent = status.startswith("5")
    reply = "550" if permanent else "451"
    reason = "Recipient address rejected: User unknown" if permanent else "Mailbox busy"
    boundary = f"=_dsn_{uuid.uuid4().hex}"
    original = original_headers.decode(errors="replace").replace("\r\n", "\n").strip()
    text = f"""\
From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>
To: {bounce_to}
Subject: {"Undelivered Mail Returned to Sender" if permanent else "Delayed Mail"}
Date: {formatdate()}
Message-ID: {make_msgid(domain=reporting_mta)}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"

--{boundary}
Content-Type: text/plain; charset=utf-8

This is the mail system at {reporting_mta}.
Your message to <{recipient}> {"could not be delivered" if permanent else "is delayed"}.

--{boundary}
Content-Type: message/delivery-status

Reporting-MTA: dns; {reporting_mta}
Arrival-Date: {formatdate()}

Final-Recipient: rfc822; {recipient}
Action: {"failed" if permanent else "delayed"}
Status: {status}
Remote-MTA: dns; mx.{recipient.rpartition("@")[2] or "example.com"}
Diagnostic-Code: smtp; {reply} {status} <{recipient}>: {reason}

--{boundary}
Content-Type: text/rfc822-headers

{original}

--{boundary}--
"""
    return text.replace("\n", "\r\n").encode()


async def send_dsn(
    relay: tuple[str, int],
    *,
    bounce_to: str,
    recipient: str,
    status: str,
    original_headers: bytes,
) -> None:
    """Send a DSN for ``recipient`` to ``bounce_to`` through the server at ``relay``
    (the null sender, as RFC 3464 asks, so a bounce never bounces)."""
    report = build_dsn(
        bounce_to=bounce_to, recipient=recipient, status=status, original_headers=original_headers
    )
    try:
        await send_report(relay, bounce_to, report)
    except (aiosmtplib.SMTPException, OSError) as err:
        log.warning("DSN to %s refused: %s", bounce_to, err)


async def send_report(relay: tuple[str, int], to: str, content: bytes) -> None:
    """Send ``content`` to ``to`` from the null sender (``MAIL FROM:<>``), as every DSN
    is sent; SMTP refusals raise."""
    async with aiosmtplib.SMTP(hostname=relay[0], port=relay[1], timeout=10) as smtp:
        await smtp.sendmail("", [to], content)
