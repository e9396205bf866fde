"""Email over SMTP (aiosmtplib), through a small pool of kept-open connections.

The ``Message-ID`` is derived from the notification id and send cycle, so every attempt
of one send carries the same one and a receiver can drop a second copy.
"""

from __future__ import annotations

import asyncio
import email.policy
import html
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import Policy
from email.utils import formatdate, parseaddr

import aiosmtplib

from activities.providers.base import Provider, ProviderError
from herald.bounce_addresses import bounce_address
from herald.contracts import SendRequest
from herald.settings import Settings

_TAGS = re.compile(r"<[^>]+>")
# Replies that refuse our account (authentication, relaying), not the recipient.
_PROVIDER_FAULT = frozenset({530, 534, 535, 538})
# "Service not available, closing transmission channel": the relay itself is unwell.
_SERVICE_UNAVAILABLE = 421


def _provider_fault(err: aiosmtplib.SMTPResponseException) -> bool:
    """Whether an SMTP reply is the relay's failure rather than a refusal of this message.

    421, our credentials or sender refused, or any other reply outside the message's own
    transaction are the relay's; a 4xx or 5xx answer to the message itself (greylisting,
    content refused) is that one message's.
    """
    if err.code == _SERVICE_UNAVAILABLE or err.code in _PROVIDER_FAULT:
        return True
    return not isinstance(err, aiosmtplib.SMTPDataError)


# RFC 5322's hard limit on a line, CRLF excluded.
_MAX_LINE = 998


class _VerbatimHeader(UnstructuredHeader, BaseHeader):
    """A header that goes on the wire as it was given (RFC 2369 / RFC 8058).

    The email package folds a long unstructured value by turning it into RFC 2047
    encoded words (``=?utf-8?q?=3Chttps=3A//...``), which mailbox providers do not read
    as ``List-Unsubscribe``. These values are ASCII already; one line unless that would
    pass RFC 5322's 998 characters, and then folded only after the commas between URIs.
    """

    def fold(self, *, policy: Policy) -> str:
        """The header as written: ``Name: value`` and the line separator."""
        value = str(self)
        if not value.isascii():  # cannot go out verbatim: leave it to the standard rules
            return super().fold(policy=policy)
        line = f"{self.name}: {value}"
        if len(line) > _MAX_LINE:
            line = line.replace(", ", "," + policy.linesep + " ")
        return line + policy.linesep


class _HeaderClasses(HeaderRegistry):
    """The standard header registry, making each header class once.

    ``HeaderRegistry`` creates a new class with ``type()`` for every header it parses,
    which was the largest single cost of building a message; the classes it makes are
    the same every time, so reusing them changes nothing else.
    """

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}
        for name in ("List-Unsubscribe", "List-Unsubscribe-Post"):
            self.map_to_type(name, _VerbatimHeader)

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made


# The default policy (RFC 5322 rules, CR/LF refused in header values) with that registry.
_POLICY = email.policy.default.clone(header_factory=_HeaderClasses())


def _plain_text(body_html: str) -> str:
    return html.unescape(_TAGS.sub("", body_html)).strip()


def _header(value: str, name: str) -> str:
    if "\r" in value or "\n" in value:
        raise ProviderError(f"refused {name} header with a line break", permanent=True)
    return value


def message_headers(request: SendRequest, sender: str) -> dict[str, str]:
    """The headers Herald adds to one notification's email beyond From/To/Subject/Date:
    the ``Message-ID`` every attempt of the send shares, Herald's notification id, and
    the message's own (``List-Unsubscribe`` and ``List-Unsubscribe-Post`` for
    non-transactional mail). SMTP and the HTTP email APIs carry the same ones."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "herald.local"
    headers = {
        "Message-ID": f"<{request.idempotency_key}@{domain}>",
        "X-Herald-Notification-Id": str(request.notification_id),
    }
    for name, value in request.message.headers.items():
        headers[_header(name, "header name")] = _header(value, name)
    return headers


def plain_text(body_html: str) -> str:
    """The plain-text alternative of an HTML body."""
    return _plain_text(body_html)


def build_message(request: SendRequest, sender: str) -> EmailMessage:
    """The MIME message for one notification (HTML with a plain-text alternative)."""
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = _header(sender, "From")
    msg["To"] = _header(request.address, "To")
    msg["Subject"] = _header(request.message.subject or "", "Subject")
    msg["Date"] = formatdate(localtime=False)
    for name, value in message_headers(request, sender).items():
        msg[name] = value
    msg.set_content(_plain_text(request.message.body))
    msg.add_alternative(request.message.body, subtype="html")
    # A random 128-bit boundary cannot occur in the parts by chance; without one, the
    # generator picks a shorter one and compiles a regular expression per message to
    # check that it does not.
    msg.set_boundary(f"=_herald_{secrets.token_hex(16)}")
    return msg


class SmtpProvider(Provider):
    """Sends through one SMTP relay, reusing up to ``pool_size`` connections."""

    def __init__(self, settings: Settings, name: str = "smtp") -> None:
        self.name = name
        self._settings = settings
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(settings.smtp_pool_size)

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self._settings
        client = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            timeout=s.provider_timeout_seconds,
            start_tls=s.smtp_starttls,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
        )
        await client.connect()
        return client

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[aiosmtplib.SMTP]:
        async with self._slots:
            client = self._idle.pop() if self._idle else await self._connect()
            try:
                yield client
            except BaseException:
                client.close()
                raise
            self._idle.append(client)

    async def deliver(self, request: SendRequest) -> str:
        """Send one email; 4xx replies and dropped connections are transient, 5xx permanent."""
        message = build_message(request, self._settings.email_from)
        # VERP: bounces come back to an address naming the notification (``herald
        # bounces``); the From header stays the configured sender.
        envelope_sender = bounce_address(self._settings, request.notification_id)
        try:
            async with self._connection() as client:
                if not client.is_connected:
                    await client.connect()
                try:
                    await client.send_message(message, sender=envelope_sender)
                except aiosmtplib.SMTPServerDisconnected:
                    # A kept-open connection the server had closed: one fresh try.
                    await client.connect()
                    await client.send_message(message, sender=envelope_sender)
        except aiosmtplib.SMTPRecipientsRefused as err:
            refusal = next(iter(err.recipients))
            raise ProviderError(
                f"{refusal.code} {refusal.message}",
                permanent=refusal.code >= 500,
                provider_fault=refusal.code == _SERVICE_UNAVAILABLE,
            ) from err
        except aiosmtplib.SMTPResponseException as err:
            raise ProviderError(
                f"{err.code} {err.message}",
                permanent=err.code >= 500,
                provider_fault=_provider_fault(err),
            ) from err
        except (aiosmtplib.SMTPException, TimeoutError) as err:
            raise ProviderError(f"{type(err).__name__}: {err}", permanent=False) from err
        return str(message["Message-ID"])

    async def close(self) -> None:
        """Close every kept-open connection."""
        while self._idle:
            self._idle.pop().close()

    async def check(self) -> tuple[bool, str]:
        """Connect, log in if configured, and quit: no message is sent."""
        try:
            client = await self._connect()
        except aiosmtplib.SMTPException as err:
            return False, f"{type(err).__name__}: {err}"
        except (TimeoutError, OSError) as err:
            return False, f"cannot reach {self._settings.smtp_host}: {type(err).__name__}"
        try:
            await client.quit()
        except aiosmtplib.SMTPException:
            client.close()
        return True, f"{self._settings.smtp_host} accepted the connection and login"
