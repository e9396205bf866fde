"""The benchmark email and the figures the comparison benchmarks report."""

from __future__ import annotations

import argparse

import pytest

from api.schemas.templates import TemplateIn
from benchmarks.comparison import bodies, body_sizes, email_body, rendered, summarize
from herald.templating import render_source

pytestmark = pytest.mark.fast


@pytest.mark.parametrize("kb", [0, 1, 30, 32])
def test_plain_queue_is_sent_what_herald_renders(kb: int) -> None:
    body = email_body(kb)
    TemplateIn(key="bench", channel="email", subject="Order {{ n }}", body=body)  # storable

    assert render_source(body, {"n": 417}, autoescape=True) == rendered(kb, 417)[1]
    assert render_source("Order {{ n }}", {"n": 417}, autoescape=False) == rendered(kb, 417)[0]


def test_large_body_is_an_html_table_of_about_the_size_asked() -> None:
    html = rendered(30, 1)[1]

    assert 29 * 1024 < len(html.encode()) <= 30 * 1024
    assert html.count("<tr>") > 100 and html.endswith("</html>")
    assert email_body(30) == email_body(30)  # deterministic
    assert bodies([0, 30])["body_30kb"] == {"kb": 30, "html_bytes": len(rendered(30, 0)[1])}


@pytest.mark.parametrize("value", ["33", "-1", "0,0", "0,x", "", "30\x00"])
def test_body_sizes_outside_a_template_are_refused(value: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        body_sizes(value)


def test_summary_gives_median_and_spread_and_cpu_per_process() -> None:
    rounds = [
        {"first": "herald", "body_0kb": {"ratio": r, "cpu_ms_per_email": {"machine": c}}}
        for r, c in ((0.5, 10.0), (0.7, 30.0), (0.6, 20.0))
    ]

    assert summarize(rounds) == {
        "body_0kb": {
            "ratio": {"median": 0.6, "min": 0.5, "max": 0.7},
            "cpu_ms_per_email": {"machine": 20.0},
        }
    }
