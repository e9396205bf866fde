"""Unsubscribing as mailbox providers do it, on the real stack: the ``List-Unsubscribe``
header as the bytes on the wire carry it, its mailto processed by ``herald bounces``, a
one-click opt-out that a later profile update does not undo, and bounces accepted only
at the signed address Herald sent from."""

from __future__ import annotations

import re
import uuid
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote

import aiosmtplib
import httpx
import pytest

from devtools.provider_reports import build_dsn, send_report
from devtools.sinks import Sinks
from herald.bounce_addresses import bounce_address
from herald.settings import Settings
from tests.e2e.test_categories_unsubscribe import URL, _sent_mail, _template
from tests.harness import Stack, Tenant, wait_for_status

MAILTO = re.compile(r"<mailto:([^?>]+)\?subject=([^>]+)>")


def _header_lines(content: bytes) -> list[bytes]:
    return content.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


async def _next_marketing_status(tenant: Tenant, user: dict[str, Any], key: str) -> str:
    nid = await tenant.send("email", user["id"], key)
    return str((await wait_for_status(tenant.client, nid))["status"])


async def test_the_unsubscribe_headers_are_plain_ascii_lines_on_the_wire(
    tenant: Tenant, sinks: Sinks, stack: Stack
) -> None:
    user = await tenant.user()
    marketing = await _template(tenant, "marketing")

    mail = await _sent_mail(tenant, sinks, user, marketing)

    assert mail.content is not None
    lines = _header_lines(mail.content)
    (line,) = [x for x in lines if x.lower().startswith(b"list-unsubscribe:")]
    assert line.startswith(f"List-Unsubscribe: <{stack.api_url}/u/".encode())
    assert b">, <mailto:" in line  # both URIs on this one line, not folded
    assert not lines[lines.index(line) + 1].startswith((b" ", b"\t"))
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in lines
    assert b"=?" not in b"\r\n".join(lines)


async def test_a_profile_update_does_not_undo_a_one_click_opt_out(
    tenant: Tenant, sinks: Sinks
) -> None:
    user = await tenant.user(timezone="Europe/Paris")
    marketing = await _template(tenant, "marketing")
    mail = await _sent_mail(tenant, sinks, user, marketing)
    found = URL.search(str(mail.raw["List-Unsubscribe"]))
    assert found
    async with httpx.AsyncClient(timeout=10) as anonymous:
        assert (await anonymous.post(found.group(1))).status_code == 200

    # A client that knows nothing of preferences updates the profile.
    put = await tenant.client.put(f"/v1/users/{user['id']}", json={"email": user["email"]})

    assert put.status_code == 200, put.text
    assert put.json()["preferences"]["categories"] == {"marketing": {"email": False}}
    assert put.json()["timezone"] is None  # the contact fields were replaced
    assert await _next_marketing_status(tenant, user, marketing) == "suppressed"


async def _mail(settings: Settings, to: str, subject: str, sender: str) -> None:
    """Send a plain message to ``herald bounces`` as a mail client would."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, subject
    message.set_content("unsubscribe")
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=settings.bounce_smtp_port) as smtp:
        await smtp.send_message(message)


async def test_mail_to_the_unsubscribe_mailto_opts_out_and_a_forged_one_is_refused(
    tenant: Tenant, sinks: Sinks, stack: Stack, settings: Settings
) -> None:
    stack.wait_ready("bounces")
    user = await tenant.user()
    marketing = await _template(tenant, "marketing")
    mail = await _sent_mail(tenant, sinks, user, marketing)
    found = MAILTO.search(str(mail.raw["List-Unsubscribe"]))
    assert found, mail.raw["List-Unsubscribe"]
    address, subject = found.group(1), unquote(found.group(2))
    token = subject.split()[-1]

    forged = [
        subject[:-2] + ("AA" if not subject.endswith("AA") else "BB"),
        "unsubscribe",
        "unsubscribe " + "A" * 5000,
        "unsubscribe \u00e9\u0000",
    ]
    for bad in forged:
        with pytest.raises(aiosmtplib.SMTPDataError) as refused:
            await _mail(settings, address, bad, user["email"])
        assert refused.value.code == 550, bad
    assert await _next_marketing_status(tenant, user, marketing) == "sent"

    # Mail clients may add a prefix of their own; the token is the subject's last word.
    await _mail(settings, address.upper(), f"Re: unsubscribe {token}", user["email"])
    await _mail(settings, address, subject, user["email"])  # again: changes nothing more

    prefs = (await tenant.client.get(f"/v1/users/{user['id']}")).json()["preferences"]
    assert prefs["categories"] == {"marketing": {"email": False}}
    assert await _next_marketing_status(tenant, user, marketing) == "suppressed"


async def test_a_bounce_is_recorded_only_at_the_signed_address_herald_sent_from(
    tenant: Tenant, sinks: Sinks, stack: Stack, settings: Settings
) -> None:
    stack.wait_ready("bounces")
    user = await tenant.user()
    template = await tenant.template("email", "<p>Hello</p>", subject="Hello")
    nid = await tenant.send("email", user["id"], template)
    assert (await wait_for_status(tenant.client, nid))["status"] == "sent"
    signed = bounce_address(settings, uuid.UUID(nid))
    relay = ("127.0.0.1", settings.bounce_smtp_port)

    def dsn(to: str) -> bytes:
        return build_dsn(
            bounce_to=to, recipient=user["email"], status="5.1.1", original_headers=b"Subject: x"
        )

    unsigned = f"bounces+{nid}@localhost"
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await send_report(relay, unsigned, dsn(unsigned))
    assert refused.value.recipients[0].code == 550
    assert (await tenant.client.get(f"/v1/notifications/{nid}")).json()["status"] == "sent"

    await send_report(relay, signed, dsn(signed))

    body = await wait_for_status(tenant.client, nid, {"undelivered"})
    assert body["last_error"].startswith("5.1.1")
