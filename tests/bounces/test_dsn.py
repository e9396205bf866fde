"""Reading delivery status notifications: what ``herald bounces`` takes a DSN to say."""

from __future__ import annotations

import uuid

import pytest
from pydantic import SecretStr

from bounces.dsn import cycle_of, parse_dsn
from devtools.provider_reports import build_dsn
from herald.bounce_addresses import bounce_address, bounced_notification
from herald.settings import Settings

pytestmark = pytest.mark.fast

NID = uuid.UUID("0b6f3a52-6a0e-4f0f-9f0a-3d7f2d1c0e11")


def _dsn(status: str, message_id: str = f"<{NID}-2@herald.example>") -> bytes:
    return build_dsn(
        bounce_to=f"bounces+{NID}@herald.example",
        recipient="ada@example.com",
        status=status,
        original_headers=f"Message-ID: {message_id}\r\nSubject: Welcome\r\n".encode(),
    )


def test_a_permanent_failure_names_its_status_and_diagnostic() -> None:
    (report,) = parse_dsn(_dsn("5.1.1")) or []

    assert report.permanent and not report.temporary
    assert report.action == "failed"
    assert report.reason.startswith("5.1.1 smtp; 550 5.1.1 <ada@example.com>")
    assert cycle_of(report.original_message_id, str(NID)) == 2


def test_a_delay_is_temporary() -> None:
    (report,) = parse_dsn(_dsn("4.4.1")) or []

    assert report.temporary and not report.permanent
    assert report.action == "delayed"


def test_mail_that_is_not_a_dsn_is_not_read_as_one() -> None:
    plain = b"From: a@example.com\r\nSubject: re: welcome\r\n\r\nThanks!\r\n"
    other_report = _dsn("5.1.1").replace(b"report-type=delivery-status", b"report-type=disposition")

    assert parse_dsn(plain) is None
    assert parse_dsn(other_report) is None


def test_the_cycle_comes_from_herald_message_ids_only() -> None:
    assert cycle_of(f"<{NID}@herald.example>", str(NID)) == 1
    assert cycle_of(f"<{NID}-3@herald.example>", str(NID)) == 3
    assert cycle_of("<something@else>", str(NID)) is None
    assert cycle_of(None, str(NID)) is None


def test_bounce_addresses_are_verp_encoded_per_notification_and_signed() -> None:
    settings = Settings(bounce_address="Bounces <bounces@mail.herald.example>")

    address = bounce_address(settings, NID)

    local, _, domain = address.partition("@")
    named, _, mac = local.partition(".")
    assert (named, domain) == (f"bounces+{NID}", "mail.herald.example")
    assert len(local) <= 64 and mac.isalnum()  # RFC 5321's limit on a local part
    assert bounced_notification(settings, address) == NID
    assert bounced_notification(settings, f"<{address.upper()}>") == NID
    assert bounced_notification(settings, address.replace(domain, "elsewhere.example")) is None
    assert bounced_notification(settings, f"bounces+not-a-uuid.{mac}@{domain}") is None
    assert bounced_notification(settings, "postmaster@mail.herald.example") is None


def test_an_unsigned_or_wrongly_signed_bounce_address_names_no_notification() -> None:
    settings = Settings(bounce_address="bounces@mail.herald.example")
    address = bounce_address(settings, NID)
    other = uuid.UUID("1b6f3a52-6a0e-4f0f-9f0a-3d7f2d1c0e11")
    foreign = Settings(
        bounce_address="bounces@mail.herald.example", unsubscribe_secret=SecretStr("other")
    )

    for forged in (
        f"bounces+{NID}@mail.herald.example",
        f"bounces+{NID}.@mail.herald.example",
        address.replace(str(NID), str(other)),
        bounce_address(foreign, NID),
        address.replace("@", "x@"),
        address.replace("@", "\u00e9@"),
        address.replace(".", ".\x00"),
    ):
        assert bounced_notification(settings, forged) is None, forged
