"""Signing in to the console over HTTP, as a browser does: the sign-in form's CSRF token,
then the session cookie, then each page's token for its forms."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(page: str) -> str:
    """The CSRF token a console page's forms carry."""
    found = _CSRF.search(page)
    assert found, "no CSRF token on the page"
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, api_key: str) -> str:
    """Sign ``client`` in with ``api_key``; returns the session's CSRF token."""
    form = await client.get("/console/sign-in")
    assert form.status_code == 200, form.text
    signed_in = await client.post(
        "/console/sign-in", data={"api_key": api_key, "csrf_token": csrf_of(form.text)}
    )
    assert signed_in.status_code == 303, signed_in.text
    page = await client.get("/console/keys")
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


AXE = Path(__file__).parent / "vendor" / "axe.min.js"


async def critical_violations(page: Any) -> list[str]:
    """axe-core's critical accessibility violations on a Playwright page (its context made
    with ``bypass_csp``: the console's policy allows only its own scripts)."""
    await page.add_script_tag(path=str(AXE))
    result = json.loads(await page.evaluate("async () => JSON.stringify(await axe.run())"))
    return [
        f"{violation['id']}: {violation['help']}"
        for violation in result["violations"]
        if violation["impact"] == "critical"
    ]
