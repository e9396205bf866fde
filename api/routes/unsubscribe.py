"""``/u/{token}``: one-click unsubscribe links (no API key: the token is signed).

``POST`` is what mail clients send for ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``
(RFC 8058) and what the confirmation page's button sends; ``GET`` only shows that page,
so a link scanner following the URL unsubscribes nobody.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import HTMLResponse
from jinja2 import Environment

from api.deps import BackendsDep
from api.errors import not_found
from api.services import unsubscribe
from herald.contracts import Text
from herald.unsubscribe import opt_out

router = APIRouter(prefix="/u", tags=["unsubscribe"])
Token = Annotated[Text, Path(min_length=1, max_length=1024)]

_PAGES = Environment(autoescape=True)
_PAGE = _PAGES.from_string(
    """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{{ title }}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}
button{font:inherit;padding:.5rem 1.25rem;cursor:pointer}</style></head>
<body>
<h1>{{ title }}</h1>
{% if done %}
<p>You will no longer get {{ category }} messages by {{ channel }}.</p>
{% else %}
<p>Stop getting {{ category }} messages by {{ channel }}?</p>
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button></form>
{% endif %}
</body>
</html>
"""
)


@router.get("/{token}", response_class=HTMLResponse)
async def confirm(token: Token, backends: BackendsDep) -> HTMLResponse:
    """A page with a button that unsubscribes (nothing changes until it is pressed)."""
    claim = unsubscribe.claim_of(backends.settings, token)
    return HTMLResponse(
        _PAGE.render(
            title="Unsubscribe", done=False, category=claim.category, channel=claim.channel.value
        )
    )


@router.post("/{token}", response_class=HTMLResponse)
async def one_click(token: Token, backends: BackendsDep) -> HTMLResponse:
    """Opt out at once (idempotent); a tampered or foreign token is a 404."""
    claim = unsubscribe.claim_of(backends.settings, token)
    # The same writer as the List-Unsubscribe mailto (``herald bounces``).
    if not await opt_out(backends.engine, claim):
        raise not_found("unsubscribe link")
    return HTMLResponse(
        _PAGE.render(
            title="Unsubscribed", done=True, category=claim.category, channel=claim.channel.value
        )
    )
