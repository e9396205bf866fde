"""Which webhook URLs Herald calls, how long it keeps retrying, and what it signs."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook

from herald.contracts import Channel, NotificationRequest
from herald.settings import Settings
from herald.submission import request_hash
from herald.webhooks import StatusWebhook, UnsafeUrl, check_url, new_secret, retry_delay

pytestmark = pytest.mark.fast


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.215.14/hooks",  # public, but not https
        "https://127.0.0.1/hooks",
        "https://localhost:8443/hooks",
        "https://10.1.2.3/hooks",
        "https://192.168.0.10/hooks",
        "https://169.254.169.254/latest/meta-data",  # cloud metadata
        "https://[::1]/hooks",
        "https://[::ffff:127.0.0.1]/hooks",
        "https://100.64.0.1/hooks",  # carrier-grade NAT
        "https://0.0.0.0/hooks",
        "https://user:secret@93.184.215.14/hooks",
        "ftp://93.184.215.14/hooks",
        "https:///hooks",
    ],
)
async def test_urls_that_are_not_https_to_a_public_address_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        await check_url(url, allow_private=False)


async def test_a_public_https_address_is_allowed() -> None:
    await check_url("https://93.184.215.14/hooks", allow_private=False)
    await check_url("https://[2606:4700:4700::1111]/hooks", allow_private=False)


async def test_private_addresses_and_http_are_allowed_when_the_setting_says_so() -> None:
    await check_url("http://127.0.0.1:9999/hooks", allow_private=True)
    await check_url("https://localhost/hooks", allow_private=True)
    with pytest.raises(UnsafeUrl):
        await check_url("ftp://127.0.0.1/hooks", allow_private=True)


def test_retries_back_off_and_span_at_least_a_day_by_default() -> None:
    settings = Settings()
    delays = [retry_delay(settings, attempt) for attempt in range(1, 40)]

    assert settings.webhook_retry_hours >= 24
    assert delays[0] <= settings.webhook_retry_initial_seconds
    assert all(delay <= settings.webhook_retry_maximum_seconds for delay in delays)
    # Grows until it reaches the cap (jitter keeps it between half and all of it).
    assert delays[10] >= settings.webhook_retry_maximum_seconds / 2 > delays[0]
    # The dispatcher gives up by time (24 h after the event), not by count: with waits of
    # at most an hour, that is dozens of attempts.
    assert sum(delays[:20]) < settings.webhook_retry_hours * 3600


def test_a_status_webhook_is_signed_as_standard_webhooks_verifies_it() -> None:
    secret = new_secret()
    event = StatusWebhook(
        event_id=42,
        notification_id=uuid.uuid4(),
        status="delivered",
        channel="sms",
        attempt=1,
        at=datetime(2030, 1, 1, tzinfo=UTC),
        detail="twilio reports delivered",
    )
    headers = event.headers(secret, now=datetime.now(UTC))

    body = Webhook(secret).verify(event.body(), headers)

    assert headers["webhook-id"] == "evt_42" == body["id"]
    assert body["type"] == "notification.delivered"
    assert body["at"] == "2030-01-01T00:00:00Z"
    # A retry an hour later: same id and body, a new timestamp and signature.
    later = event.headers(secret, now=datetime.now(UTC) + timedelta(hours=1))
    assert later["webhook-id"] == headers["webhook-id"]
    assert later["webhook-signature"] != headers["webhook-signature"]


def test_requests_that_do_not_wait_for_a_receipt_hash_as_before() -> None:
    """An Idempotency-Key replayed across the upgrade still matches its first request."""
    plain = NotificationRequest(channel=Channel.push, user_id="ada", template="t")
    waiting = NotificationRequest(
        channel=Channel.push,
        user_id="ada",
        template="t",
        fallback=[Channel.sms],
        confirm_within_seconds=5,
    )
    before = {
        "channel": "push",
        "user_id": "ada",
        "template": "t",
        "locale": None,
        "data": {},
        "send_at": None,
    }
    canonical = json.dumps(before, sort_keys=True, separators=(",", ":"))

    assert request_hash(plain) == hashlib.sha256(canonical.encode()).hexdigest()
    assert request_hash(plain) != request_hash(waiting)
