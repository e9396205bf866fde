"""What each provider is handed: the email's MIME message and headers, the Twilio form and
the FCM JSON, each carrying the notification's idempotency key."""

from __future__ import annotations

import email
import email.policy
import json
import uuid
from email.message import EmailMessage
from urllib.parse import parse_qs

import httpx
import pytest

from activities.providers.base import ProviderError
from activities.providers.email import build_message
from activities.providers.push import FcmProvider
from activities.providers.sms import TwilioProvider
from herald.contracts import Channel, RenderedMessage, SendRequest
from herald.settings import Settings

pytestmark = pytest.mark.fast

NOTIFICATION = uuid.UUID("0f6a3c52-9d3e-4c41-8a51-3f1c2b7d9e10")


def send_request(
    channel: Channel = Channel.email,
    *,
    cycle: int = 1,
    address: str = "ada@example.com",
    subject: str | None = "Your code",
    body: str = "<p>Hello &amp; welcome, <b>Ada</b></p>",
    data: dict[str, object] | None = None,
) -> SendRequest:
    return SendRequest(
        notification_id=NOTIFICATION,
        cycle=cycle,
        channel=channel,
        address=address,
        message=RenderedMessage(template_version=3, locale="en", subject=subject, body=body),
        data=data or {},
    )


def reparsed(message: EmailMessage) -> EmailMessage:
    """The message as a receiving server reads it off the wire."""
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_the_email_carries_sender_recipient_subject_and_the_notification_key() -> None:
    message = reparsed(build_message(send_request(), "Herald <herald@mail.example.org>"))

    assert message["From"] == "Herald <herald@mail.example.org>"
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == "Your code"
    assert message["Message-ID"] == f"<{NOTIFICATION}@mail.example.org>"
    assert message["X-Herald-Notification-Id"] == str(NOTIFICATION)
    assert message["Date"] is not None


def test_every_attempt_of_a_cycle_has_one_message_id_and_a_resend_another() -> None:
    sender = "herald@example.org"
    first = build_message(send_request(), sender)
    again = build_message(send_request(), sender)
    resent = build_message(send_request(cycle=2), sender)

    assert first["Message-ID"] == again["Message-ID"] == f"<{NOTIFICATION}@example.org>"
    assert resent["Message-ID"] == f"<{NOTIFICATION}-2@example.org>"


def test_the_email_is_html_with_a_plain_text_alternative() -> None:
    message = reparsed(build_message(send_request(), "herald@example.org"))

    assert message.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    assert plain.get_content().strip() == "Hello & welcome, Ada"
    assert "<b>Ada</b>" in html.get_content()
    # Each message gets its own unguessable boundary.
    other = build_message(send_request(), "herald@example.org")
    assert message.get_boundary() != other.get_boundary()


@pytest.mark.parametrize(
    "field",
    [
        {"address": "ada@example.com\r\nBcc: eve@example.com"},
        {"subject": "Hi\nBcc: eve@example.com"},
    ],
)
def test_a_header_with_a_line_break_is_refused_for_good(field: dict[str, str]) -> None:
    with pytest.raises(ProviderError) as refused:
        build_message(send_request(**field), "herald@example.org")  # type: ignore[arg-type]

    assert refused.value.permanent


@pytest.fixture
def settings() -> Settings:
    return Settings(
        sms_api_url="https://api.twilio.test/",
        sms_account_sid="AC123",
        sms_auth_token="secret-token",
        sms_from="+15550001111",
        push_api_url="https://fcm.test",
        push_project_id="herald-prod",
        push_token="push-token",
    )


async def test_the_twilio_request_is_a_form_post_with_the_key_in_its_headers(
    settings: Settings,
) -> None:
    async with httpx.AsyncClient() as client:
        provider = TwilioProvider(settings, client)
        request = provider.build_request(
            send_request(Channel.sms, address="+447700900123", body="Code 4711")
        )
        assert provider.auth is not None
        authorised = next(provider.auth.auth_flow(request))

    assert request.method == "POST"
    assert str(request.url) == "https://api.twilio.test/2010-04-01/Accounts/AC123/Messages.json"
    form = {key: values for key, values in parse_qs(request.content.decode()).items()}
    assert form == {
        "To": ["+447700900123"],
        "From": ["+15550001111"],
        "Body": ["Code 4711"],
        # Where Twilio reports delivered / undelivered.
        "StatusCallback": [f"{settings.public_url}/v1/providers/twilio/status"],
    }
    assert request.headers["I-Twilio-Idempotency-Token"] == str(NOTIFICATION)
    assert request.headers["Idempotency-Key"] == str(NOTIFICATION)
    expected = httpx.BasicAuth("AC123", "secret-token")
    assert (
        authorised.headers["Authorization"]
        == next(expected.auth_flow(request)).headers["Authorization"]
    )


async def test_the_fcm_request_carries_title_body_string_data_and_the_key(
    settings: Settings,
) -> None:
    async with httpx.AsyncClient() as client:
        provider = FcmProvider(settings, client)
        request = provider.build_request(
            send_request(
                Channel.push,
                cycle=3,
                address="tok-1",
                subject=None,
                body="Your parcel is here",
                data={"count": 2, "urgent": True, "who": "Ada"},
            )
        )

    assert request.method == "POST"
    assert str(request.url) == "https://fcm.test/v1/projects/herald-prod/messages:send"
    assert request.headers["Authorization"] == "Bearer push-token"
    assert request.headers["Idempotency-Key"] == f"{NOTIFICATION}-3"
    assert json.loads(request.content) == {
        "message": {
            "token": "tok-1",
            "notification": {"title": "", "body": "Your parcel is here"},
            "data": {
                "count": "2",
                "urgent": "True",
                "who": "Ada",
                "herald_id": f"{NOTIFICATION}-3",
            },
        }
    }
