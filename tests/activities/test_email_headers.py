"""The unsubscribe headers as they go on the wire: plain ASCII on one line (RFC 2369,
RFC 8058), never RFC 2047 encoded words, whatever the email package would do with them."""

from __future__ import annotations

import uuid

import pytest
from aiosmtplib.email import flatten_message

from activities.providers.email import build_message
from herald.contracts import Channel, RenderedMessage, SendRequest
from herald.settings import Settings
from herald.unsubscribe import Unsubscribe, links

pytestmark = pytest.mark.fast

SETTINGS = Settings(public_url="https://notify.example.com", bounce_address="b@mail.acme.test")


def _wire(headers: dict[str, str], subject: str = "Sale") -> bytes:
    """The bytes aiosmtplib sends for a message with ``headers``."""
    request = SendRequest(
        notification_id=uuid.uuid4(),
        channel=Channel.email,
        address="ada@example.com",
        message=RenderedMessage(
            template_version=1, locale="en", subject=subject, body="<p>x</p>", headers=headers
        ),
    )
    return flatten_message(build_message(request, "Acme <news@acme.test>"))


def _header_lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


@pytest.mark.parametrize("user_id", ["u-1", "a-long-user-id-" + "x" * 113])
def test_list_unsubscribe_goes_out_as_one_plain_ascii_line(user_id: str) -> None:
    _, headers = links(SETTINGS, Unsubscribe(uuid.uuid4(), user_id, "marketing", Channel.email))

    lines = _header_lines(_wire(headers))

    (line,) = [x for x in lines if x.startswith(b"List-Unsubscribe:")]
    assert line == f"List-Unsubscribe: {headers['List-Unsubscribe']}".encode("ascii")
    assert line.startswith(b"List-Unsubscribe: <https://notify.example.com/u/")
    assert b"<mailto:unsubscribe@mail.acme.test?subject=unsubscribe%20" in line
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in lines
    # The next line is another header, not a continuation of this one.
    assert not lines[lines.index(line) + 1].startswith((b" ", b"\t"))
    assert b"=?" not in b"\r\n".join(x for x in lines if x.startswith(b"List-"))
    assert len(line) <= 998


def test_a_value_past_the_line_limit_is_folded_only_after_the_comma() -> None:
    value = f"<https://notify.example.com/u/{'t' * 600}>, <mailto:u@x.test?subject={'t' * 600}>"

    raw = _wire({"List-Unsubscribe": value})

    start = raw.index(b"List-Unsubscribe:")
    folded = raw[start : raw.index(b"\r\n", raw.index(b"\r\n", start) + 2)]
    assert folded == value.replace(", ", ",\r\n ").join(["List-Unsubscribe: ", ""]).encode()
    assert b"=?" not in folded


def test_other_headers_keep_the_standard_rules() -> None:
    raw = _wire({}, subject="Grüße " + "lang " * 30)

    subject = b"".join(x for x in _header_lines(raw) if b"=?utf-8?" in x)
    assert subject  # non-ASCII subjects are still encoded words, as they must be
