"""Template rendering refuses sandbox escapes, and every render stays within its output
size and CPU time limits, whatever the template does."""

from __future__ import annotations

import time

import pytest
from jinja2 import StrictUndefined
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from herald.templating import RenderLimitExceeded, RenderLimits, plain_text, render_source

pytestmark = pytest.mark.fast

BIG = "x" * 500_000
DATA = {"xs": list(range(5000)), "name": "Ada", "big": BIG}
OUTPUT = "template output exceeds 1048576 bytes"
TIME = "template rendering exceeded 500 ms"
# A refusal comes in milliseconds (a time-limit refusal after 500 ms of CPU); the bound
# only tells a hang from a refusal on a loaded machine.
HANG = 5.0

DOUBLING = "{% set a = 'x' * 100000 %}" + "{% set a = a + a %}" * 14 + "{{ a|length }}"

BOMBS = [
    pytest.param(DOUBLING, OUTPUT, id="plus-doubling"),
    pytest.param(DOUBLING.replace("a + a", "a ~ a"), OUTPUT, id="tilde-doubling"),
    pytest.param("{% set a = [1] * 1000 %}" + "{% set a = a + a %}" * 9, OUTPUT, id="list-plus"),
    pytest.param("{{ 'a' * 100000000 }}", OUTPUT, id="repetition"),
    pytest.param("{{ ([1] * 100000000)|length }}", OUTPUT, id="list-repetition"),
    pytest.param("{{ 2 ** 100000000 }}", OUTPUT, id="power"),
    pytest.param("{% set a = 2 ** 60 %}{{ ((a ** 60) ** 60) ** 60 }}", OUTPUT, id="power-chain"),
    pytest.param("{{ '{:>99999999}'.format(1) }}", OUTPUT, id="format-width"),
    pytest.param("{{ '{:.99999999f}'.format(1.5) }}", OUTPUT, id="format-precision"),
    pytest.param("{{ '{:>{}}'.format(1, 99999999) }}", OUTPUT, id="format-nested-width"),
    pytest.param("{{ ('{0}' * 10).format(big) }}", OUTPUT, id="format-repeated-field"),
    pytest.param("{{ '{a:>99999999}'.format_map({'a': 1}) }}", OUTPUT, id="format-map"),
    pytest.param("{{ ('{:>99999999}'|safe).format(1) }}", OUTPUT, id="markup-format"),
    pytest.param("{{ '%099999999d' % 1 }}", OUTPUT, id="percent-width"),
    pytest.param("{{ '%*d' % (99999999, 1) }}", OUTPUT, id="percent-star-width"),
    pytest.param("{{ ('%(a)s' * 10) % {'a': big} }}", OUTPUT, id="percent-repeated-key"),
    pytest.param("{{ '%99999999d'|format(1) }}", OUTPUT, id="format-filter"),
    pytest.param("{{ 'a'|center(10**9) }}", OUTPUT, id="center"),
    pytest.param("{{ 'a'.ljust(10**9) }}", OUTPUT, id="ljust"),
    pytest.param("{{ 'a'.zfill(10**9) }}", OUTPUT, id="zfill"),
    pytest.param("{{ ('\t' * 1000).expandtabs(100000) }}", OUTPUT, id="expandtabs"),
    pytest.param("{{ ('a\n' * 1000)|indent(10000) }}", OUTPUT, id="indent"),
    pytest.param("{{ big|wordwrap(1, wrapstring='x' * 100) }}", OUTPUT, id="wordwrap"),
    pytest.param("{{ ('a' * 10000)|replace('a', 'b' * 10000) }}", OUTPUT, id="replace"),
    pytest.param("{{ ('a' * 10000).replace('a', 'b' * 10000) }}", OUTPUT, id="replace-method"),
    pytest.param("{{ big.translate({120: big}) }}", OUTPUT, id="translate"),
    pytest.param("{{ ([big] * 1000)|join }}", OUTPUT, id="join-filter"),
    pytest.param("{{ ''.join([big] * 1000) }}", OUTPUT, id="join-method"),
    pytest.param("{{ ([big] * 1000)|map('trim')|join }}", None, id="join-of-a-generator"),
    pytest.param("{{ [big] * 1000 }}", OUTPUT, id="list-as-text"),
    pytest.param("{{ ([big] * 1000)|string }}", OUTPUT, id="string-filter"),
    pytest.param("{{ ([big] * 1000) ~ '' }}", OUTPUT, id="list-in-tilde"),
    pytest.param("{{ [namespace(a=big)] * 1000 }}", OUTPUT, id="namespace-as-text"),
    pytest.param("{{ ([[big] * 100] * 100000)|sum(start=[]) }}", OUTPUT, id="sum-of-lists"),
    pytest.param(
        "{% set l = [1] %}{% for i in range(40) %}{% set _ = l.extend(l) %}{% endfor %}",
        OUTPUT,
        id="list-extend-doubling",
    ),
    pytest.param("{{ [1]|batch(10**9, 'x')|list }}", OUTPUT, id="batch-fill"),
    pytest.param("{{ [1]|slice(10**9)|list }}", OUTPUT, id="slice-count"),
    pytest.param("{{ [big]|tojson(indent=10**9) }}", OUTPUT, id="tojson-indent"),
    pytest.param("{{ lipsum(10**6) }}", OUTPUT, id="lipsum"),
    pytest.param("{{ range(10**9)|list|length }}", OUTPUT, id="range-list"),
    pytest.param("{{ range(10**9)|sum }}", OUTPUT, id="range-sum"),
    pytest.param(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        TIME,
        id="nested-loops-without-output",
    ),
    pytest.param(
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ '.' * 1000 }}{% endfor %}"
        "{% endfor %}",
        OUTPUT,
        id="loop-with-output",
    ),
    pytest.param("{% for i in range(100000) %}{{ big }}{% endfor %}", OUTPUT, id="loop-of-big"),
    pytest.param(
        "{% set s %}{% for i in range(100000) %}{{ big }}{% endfor %}{% endset %}{{ s|length }}",
        OUTPUT,
        id="loop-captured-in-a-block",
    ),
    pytest.param(
        "{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}{% endif %}{% endmacro %}"
        "{{ m(60) }}",
        TIME,
        id="exponential-macro-recursion",
    ),
    pytest.param(
        "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "recursion", id="endless-macro"
    ),
    pytest.param(
        "{% for i in [1] recursive %}{{ loop([1, 1]) }}{% endfor %}",
        "recursion",
        id="endless-recursive-loop",
    ),
    pytest.param(
        "{% for i in range(100000) %}{{ (xs|sort)[0] and '' }}{% endfor %}",
        TIME,
        id="sorting-in-a-loop",
    ),
    pytest.param("{{ (')' * 20000 ~ 'a')|urlize }}", TIME, id="urlize-quadratic-regex"),
    pytest.param("{{ big|urlize|length }}", None, id="urlize-on-big-text"),
    # The format-width pattern this module used was quadratic in a run of ":".
    pytest.param("{{ ('{' ~ ':' * 200000).format() }}", "", id="format-colon-run"),
    pytest.param("{{ ('{:' ~ '1' * 200000 ~ '}').format(1) }}", OUTPUT, id="format-digit-run"),
]


@pytest.mark.parametrize(("source", "reason"), BOMBS)
def test_bombs_are_refused_naming_the_limit(source: str, reason: str | None) -> None:
    # A bomb stopped by a limit other than time is given time enough (up to HANG) that
    # a busy machine cannot make the time limit come first.
    limits = RenderLimits(max_ms=int(HANG * 1000) // 2) if reason not in (TIME, None) else None
    started = time.monotonic()
    with pytest.raises(Exception) as refused:
        render_source(source, DATA, autoescape=False, limits=limits)
    assert time.monotonic() - started < HANG
    if reason is None:  # either limit may come first, depending on the machine
        assert isinstance(refused.value, RenderLimitExceeded), refused.value
        assert OUTPUT in str(refused.value) or TIME in str(refused.value), refused.value
    elif reason:
        assert isinstance(refused.value, SecurityError), refused.value
        assert reason in str(refused.value)


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("{{ ''.__class__.__mro__ }}", id="class-walk"),
        pytest.param("{{ cycler.__init__.__globals__ }}", id="globals"),
        pytest.param("{{ name.__class__.__base__.__subclasses__() }}", id="subclasses"),
    ],
)
def test_sandbox_escapes_are_refused(source: str) -> None:
    with pytest.raises(SecurityError):
        render_source(source, DATA, autoescape=False)


def test_limits_come_from_the_caller() -> None:
    small = RenderLimits(max_bytes=2048, max_ms=50)
    with pytest.raises(RenderLimitExceeded, match="exceeds 2048 bytes"):
        render_source("{{ 'x' * 3000 }}", {}, autoescape=False, limits=small)
    with pytest.raises(RenderLimitExceeded, match="exceeded 50 ms"):
        render_source(
            "{% for i in range(250) %}{% for j in range(250) %}{% for k in range(250) %}"
            "{% endfor %}{% endfor %}{% endfor %}",
            {},
            autoescape=False,
            limits=small,
        )
    # Just under the limits, in bytes of UTF-8: 1024 two-byte characters fit 2048.
    assert render_source("{{ 'é' * 1024 }}", {}, autoescape=False, limits=small) == "é" * 1024
    with pytest.raises(RenderLimitExceeded, match="exceeds 2048 bytes"):
        render_source("{{ 'é' * 1025 }}", {}, autoescape=False, limits=small)


NORMAL = (
    "{% macro row(item) %}<tr><td>{{ item.name|title }}</td>"
    "<td>{{ '%.2f'|format(item.price) }}</td><td>{{ '{:>6}'.format(item.qty) }}</td></tr>"
    "{% endmacro %}"
    "<p>Hi {{ user.name }}, order {{ order.id }} ({{ order.lines|length }} items):</p>"
    "<table>{% for item in order.lines %}{{ row(item) }}{% endfor %}</table>"
    "<p>Total {{ order.lines|sum(attribute='price') }}; {{ order.lines|map(attribute='name')"
    "|join(', ') }}; {{ (order.note ~ '!')|upper|center(30) }}; {{ tags|sort|join('/') }}</p>"
    "{% set shipped = order.id * 2 + 1 %}{{ shipped }} {{ 2 ** 10 }} {{ [1, 2] + [3] }}"
    "{{ 'a-b'.replace('-', '+') }} {{ order.note|wordwrap(5) }} {{ order|tojson }}"
)
NORMAL_DATA = {
    "user": {"name": "Ada <Lovelace>"},
    "order": {
        "id": 1234,
        "note": "fragile goods inside",
        "lines": [{"name": f"item {i}", "price": 1.5 * i, "qty": i} for i in range(1, 40)],
    },
    "tags": ["b", "a", "c"],
}


@pytest.mark.parametrize("autoescape", [False, True])
def test_ordinary_templates_render_as_plain_jinja_does(autoescape: bool) -> None:
    plain = SandboxedEnvironment(autoescape=autoescape, undefined=StrictUndefined)
    expected = plain.from_string(NORMAL).render(**NORMAL_DATA)
    assert render_source(NORMAL, NORMAL_DATA, autoescape=autoescape) == expected


def test_bounds_add_little_to_an_ordinary_render() -> None:
    plain = SandboxedEnvironment(autoescape=True, undefined=StrictUndefined).from_string(NORMAL)
    renders = {
        "bounded": lambda: render_source(NORMAL, NORMAL_DATA, autoescape=True),
        "plain": lambda: plain.render(**NORMAL_DATA),
    }
    best = dict.fromkeys(renders, float("inf"))
    for _ in range(10):  # interleaved, best of each: load on the machine hits both alike
        for name, render in renders.items():
            started = time.perf_counter()
            for _ in range(5):
                render()
            best[name] = min(best[name], time.perf_counter() - started)
    # Measured at about 2.4 times a plain sandbox on this macro- and call-heavy template
    # (a few microseconds per call, filter and operator); the bound leaves room for noise.
    assert best["bounded"] < 5 * best["plain"], best


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
    assert render_source("{{ name ~ '<i>' }}", {"name": "<b>"}, autoescape=True) == (
        "&lt;b&gt;&lt;i&gt;"
    )


def test_plain_text_is_linear_on_a_run_of_angle_brackets() -> None:
    started = time.monotonic()
    assert plain_text("<" * 200_000 + "<b>x</b>") == "<" * 200_000 + "x"
    assert time.monotonic() - started < HANG
