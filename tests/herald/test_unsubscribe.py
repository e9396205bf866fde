"""Unsubscribe tokens and links: they name tenant, user, category and channel, cannot be
altered or made with another secret, and become RFC 8058 headers only on
non-transactional email."""

from __future__ import annotations

import email
import email.policy
import string
import uuid

import pytest
from pydantic import SecretStr

from activities.providers.email import build_message
from herald.contracts import Channel, RenderedMessage, SendRequest
from herald.settings import Settings
from herald.unsubscribe import Unsubscribe, links, make_token, read_token

pytestmark = pytest.mark.fast

SETTINGS = Settings(public_url="https://notify.example.com/", email_from="Acme <news@acme.test>")
WHO = Unsubscribe(uuid.uuid4(), "user-42", "marketing", Channel.email)


def test_a_token_reads_back_as_what_it_names() -> None:
    assert read_token(SETTINGS, make_token(SETTINGS, WHO)) == WHO


def test_a_changed_character_or_another_secret_is_refused() -> None:
    token = make_token(SETTINGS, WHO)
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    for position in (0, len(token) // 2, len(token) - 1):
        # Flip the character's top bit: the last one's low bits may be padding, which a
        # decoder ignores, so changing only those would change nothing.
        flipped = alphabet[alphabet.index(token[position]) ^ 0b100000]
        changed = token[:position] + flipped + token[position + 1 :]
        assert read_token(SETTINGS, changed) is None
    foreign = Settings(unsubscribe_secret=SecretStr("someone-else"))
    assert read_token(SETTINGS, make_token(foreign, WHO)) is None
    assert read_token(SETTINGS, "not-a-token") is None


def test_non_transactional_email_gets_both_headers_with_an_https_link_and_a_mailto() -> None:
    url, headers = links(SETTINGS, WHO)

    assert url.startswith("https://notify.example.com/u/")
    token = url.rsplit("/", 1)[1]
    assert headers["List-Unsubscribe"] == (
        f"<{url}>, <mailto:unsubscribe@localhost?subject=unsubscribe%20{token}>"
    )
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_sms_gets_a_link_but_no_headers_and_transactional_gets_nothing() -> None:
    url, headers = links(SETTINGS, Unsubscribe(WHO.tenant_id, "u", "marketing", Channel.sms))
    assert url and headers == {}
    assert links(SETTINGS, Unsubscribe(WHO.tenant_id, "u", "transactional", Channel.email)) == (
        "",
        {},
    )


def test_the_email_carries_the_rendered_headers() -> None:
    _, headers = links(SETTINGS, WHO)
    request = SendRequest(
        notification_id=uuid.uuid4(),
        channel=Channel.email,
        address="ada@example.com",
        message=RenderedMessage(
            template_version=1, locale="en", subject="Sale", body="<p>x</p>", headers=headers
        ),
    )

    parsed = email.message_from_bytes(
        build_message(request, SETTINGS.email_from).as_bytes(), policy=email.policy.default
    )

    assert str(parsed["List-Unsubscribe"]) == headers["List-Unsubscribe"]
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
