"""What the benchmarks that set Herald beside a baseline share (``throughput.py``,
``peer_queue.py``): the benchmark email at a chosen size, and the median and spread of
figures measured in interleaved rounds.

The email of ``--body-kb N`` (N > 0) is an order confirmation: a styled HTML page with a
table of item rows, about N KB once rendered, the same for every run (no random bytes:
compression and the codec see what a real email gives them). ``--body-kb 0`` is the
short body the benchmarks have always sent. Herald renders it from its benchmark
template (a new version of it is stored when the size changes); the plain queue, which
has no templates, is sent the same HTML Herald renders for the same ``n``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
from typing import Any

import aiohttp

from api.schemas.templates import MAX_TEMPLATE_CHARS
from benchmarks.load import EmailService, LoadGenerator

# What LoadGenerator's template and the plain queue's ``request`` send (``--body-kb 0``).
SUBJECT = "Order {{ n }}"
SMALL_BODY = "<p>Order {{ n }} shipped</p>"

_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Order {{ n }}</title>
<style>
body { font-family: Helvetica, Arial, sans-serif; color: #1f2933; margin: 0; padding: 24px; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #e4e7eb; padding: 6px 8px; text-align: left; }
td.amount { text-align: right; white-space: nowrap; }
</style></head>
<body>
<h1>Order {{ n }} shipped</h1>
<p>Thank you for your order. The items below left our warehouse today; the carrier's
tracking link follows in a separate email once the parcel is scanned.</p>
<table>
<thead><tr><th>Article</th><th>Description</th><th>Qty</th><th>Price</th></tr></thead>
<tbody>
"""
_FOOT = """</tbody>
</table>
<p>Questions about order {{ n }}? Reply to this email and we will get back to you.</p>
<p style="font-size: 12px; color: #7b8794;">Herald Benchmark Store, 1 Example Street,
Exampletown. You receive this email because you placed an order with us.</p>
</body></html>"""
_PRODUCTS = (
    "Stainless steel water bottle, 750 ml, brushed finish",
    "Merino wool socks, pack of three, charcoal grey",
    "Notebook, A5, dotted grid, 160 pages, lay-flat binding",
    "USB-C charging cable, braided, 2 m",
    "Ceramic pour-over coffee dripper, size 02, white",
)


@functools.cache
def email_body(kb: int) -> str:
    """The benchmark template's body for ``--body-kb kb``: ``n`` is the email's number."""
    if kb == 0:
        return SMALL_BODY
    budget = kb * 1024 - len(_HEAD) - len(_FOOT)
    rows: list[str] = []
    for i in range(1, kb * 1024):
        row = (
            f"<tr><td>SKU-{i:05d}</td><td>{_PRODUCTS[i % len(_PRODUCTS)]}</td>"
            f'<td>{i % 7 + 1}</td><td class="amount">{(i * 379) % 10_000 / 100:.2f} EUR</td></tr>\n'
        )
        if len(row) > budget:
            break
        rows.append(row)
        budget -= len(row)
    return _HEAD + "".join(rows) + _FOOT


def rendered(kb: int, n: int) -> tuple[str, str]:
    """The subject and HTML Herald renders from the template for email number ``n``."""
    return SUBJECT.replace("{{ n }}", str(n)), email_body(kb).replace("{{ n }}", str(n))


def positive(value: str) -> int:
    """A whole number of at least 1 (``--count``, ``--concurrency``, ``--rounds``)."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"not a whole number of at least 1: {value!r}")
    return number


def body_sizes(value: str) -> list[int]:
    """``--body-kb``: a comma-separated list of body sizes in KB (0: the short body)."""
    try:
        sizes = [int(part) for part in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of whole numbers: {value!r}") from None
    largest = MAX_TEMPLATE_CHARS // 1024
    if any(size < 0 or size > largest for size in sizes) or len(set(sizes)) != len(sizes):
        raise argparse.ArgumentTypeError(
            f"sizes must be distinct, from 0 to {largest} (a template holds at most "
            f"{MAX_TEMPLATE_CHARS} characters)"
        )
    return sizes


def arguments(doc: str | None, measured: str) -> argparse.ArgumentParser:
    """The options both comparisons take (``measured``: what ``--count`` counts)."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=positive, default=1000, help=f"{measured} per measured run")
    parser.add_argument("--concurrency", type=positive, default=32, help="callers at once")
    parser.add_argument("--rounds", type=positive, default=3, help="interleaved rounds")
    parser.add_argument(
        "--body-kb",
        type=body_sizes,
        default=[0],
        help="email body sizes in KB, comma-separated (0: the short body; e.g. 0,30)",
    )
    return parser


def body_label(kb: int) -> str:
    """The key of one body size's figures in a benchmark's JSON."""
    return f"body_{kb}kb"


def bodies(sizes: list[int]) -> dict[str, dict[str, int]]:
    """What each body size sends: its KB and the bytes of one rendered HTML body."""
    return {
        body_label(kb): {"kb": kb, "html_bytes": len(rendered(kb, 0)[1].encode())} for kb in sizes
    }


async def use_herald_body(load: LoadGenerator, kb: int) -> None:
    """Store ``kb``'s body as the latest version of Herald's benchmark template, then send
    one email with it (not measured), so the workers have compiled it."""
    template = {"key": "bench", "channel": "email", "subject": SUBJECT, "body": email_body(kb)}
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {load.api_key}"}) as session,
        session.put(f"{load.api_url}/v1/templates/bench", json=template) as response,
    ):
        assert response.status == 200, await response.text()
    await warm(load)


async def warm(service: EmailService) -> None:
    """Send one email (number -1) and wait until the service has recorded it as sent."""
    sent = await service.sent()
    await service.submit(-1)
    while await service.sent() < sent + 1:
        await asyncio.sleep(0.1)


def spread(values: list[float]) -> dict[str, float]:
    """The median of one figure over the rounds, and its lowest and highest value."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Every figure of ``rounds`` (dicts of one shape) as its ``spread``, and every CPU
    breakdown (a key starting ``cpu_ms``) as the median per process, nested as in a round;
    text (which system went first) is left out."""
    summary: dict[str, Any] = {}
    for key, first in rounds[0].items():
        values = [r[key] for r in rounds]
        if key.startswith("cpu_ms"):
            summary[key] = {
                name: round(statistics.median(v[name] for v in values), 2) for name in first
            }
        elif isinstance(first, dict):
            summary[key] = summarize(values)
        elif isinstance(first, int | float) and not isinstance(first, bool):
            summary[key] = spread(values)
    return summary
