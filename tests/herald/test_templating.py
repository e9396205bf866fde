"""Template rendering refuses sandbox escapes and bounds the work one render may do."""

from __future__ import annotations

import pytest
from jinja2.exceptions import SecurityError

from herald.templating import render_source

pytestmark = pytest.mark.fast

DATA = {"xs": list(range(5000)), "name": "Ada"}


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("{{ ''.__class__.__mro__ }}", id="class-walk"),
        pytest.param("{{ cycler.__init__.__globals__ }}", id="globals"),
        pytest.param("{{ name.__class__.__base__.__subclasses__() }}", id="subclasses"),
        pytest.param("{% for i in range(100000000) %}x{% endfor %}", id="huge-range"),
        pytest.param(
            "{% for a in xs %}{% for b in xs %}{% endfor %}{% endfor %}", id="nested-loops"
        ),
        pytest.param("{{ 'a' * 100000000 }}", id="repetition"),
        pytest.param("{{ 2 ** 100000000 }}", id="power"),
        pytest.param("{{ '%0100000000d' % 1 }}", id="percent-width"),
        pytest.param("{{ '{:>100000000}'.format(1) }}", id="format-width"),
        pytest.param("{{ 'a'|center(100000000) }}", id="filter-width"),
        pytest.param("{{ 'a'.ljust(100000000) }}", id="method-width"),
        pytest.param("{{ ('a' * 1000).replace('a', 'b' * 1000) }}", id="replace-growth"),
        pytest.param("{{ xs|slice(1000000000)|list }}", id="filter-iterations"),
        pytest.param("{% for i in range(100000) %}{{ name }}{% endfor %}", id="output-size"),
    ],
)
# The refusal is the behaviour; the timeout only keeps an unbounded render from hanging
# the run (each is refused in milliseconds, long before its work or memory would grow).
@pytest.mark.timeout(60)
def test_escapes_and_bombs_are_refused(source: str) -> None:
    with pytest.raises(SecurityError):
        render_source(source, DATA, autoescape=False)


def test_ordinary_templates_still_render() -> None:
    source = (
        "Hi {{ name }}, order {{ '%d'|format(123456789) }}: "
        "{% for i in range(3) %}{{ i }}{% endfor %} {{ '{:>4}'.format(7) }} {{ xs|length }}"
    )
    assert render_source(source, DATA, autoescape=False) == "Hi Ada, order 123456789: 012    7 5000"


def test_autoescape_still_applies() -> None:
    assert (
        render_source("<p>{{ name }}</p>", {"name": "<b>"}, autoescape=True) == "<p>&lt;b&gt;</p>"
    )
