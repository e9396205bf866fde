"""Which ``data`` variables a template version cannot render without: the analysis the
intake refuses requests by. Every variable it names must really fail the render when
missing (checked by rendering), and a guarded or conditional use never counts."""

from __future__ import annotations

from typing import Any

import pytest
from jinja2 import UndefinedError

from herald.contracts import Channel, NotificationRequest
from herald.intake import missing_data
from herald.submission import TemplateVersion
from herald.templating import _FORCING_FILTERS, render_source, required_variables

pytestmark = pytest.mark.fast

# (template, data it renders with, the variables it needs)
CASES: list[Any] = [
    pytest.param(
        "Hi {{ name }}, code {{ code }}", {"name": "A", "code": 1}, {"name", "code"}, id="plain"
    ),
    pytest.param("No variables at all", {}, set(), id="none"),
    pytest.param("{% if x is defined %}{{ x }}{% endif %}", {}, set(), id="if-defined"),
    pytest.param(
        "{% if x is undefined %}none{% else %}{{ x }}{% endif %}", {}, set(), id="if-undefined"
    ),
    pytest.param("{{ x if x is defined else 'none' }}", {}, set(), id="conditional-expression"),
    pytest.param(
        "{{ x|default('a') }} {{ y|d('b') }} {{ z|default('c', true) }}", {}, set(), id="default"
    ),
    pytest.param("{{ x|default(y) }}", {"x": 1}, set(), id="default-of-variable"),
    pytest.param("{{ name|default('you')|upper }}", {}, set(), id="default-then-filter"),
    pytest.param("{{ name|upper }}", {"name": "a"}, {"name"}, id="filter"),
    pytest.param(
        "{{ name|e }} {{ n|length }}", {"name": "a", "n": []}, {"name", "n"}, id="filters"
    ),
    pytest.param(
        "{{ xs|map(attribute='a')|list|length if xs is defined else 0 }}",
        {},
        set(),
        id="map-guarded",
    ),
    # Used both ways: required where unguarded.
    pytest.param("{% if x is defined %}{{ x }}{% endif %}{{ x }}", {"x": 1}, {"x"}, id="both-ways"),
    # A data-dependent branch may not run: only its test is needed.
    pytest.param(
        "{% if premium %}{{ code }}{% else %}{{ other }}{% endif %}",
        {"premium": False, "other": 1},
        {"premium"},
        id="if-branch",
    ),
    pytest.param("{% if a %}1{% elif b %}2{% endif %}", {"a": True}, {"a"}, id="elif"),
    pytest.param(
        "{% for i in items %}{{ i.name }} {{ extra }}{% endfor %}",
        {"items": []},
        {"items"},
        id="loop",
    ),
    pytest.param(
        "{% for i in items %}{% else %}{{ empty }}{% endfor %}",
        {"items": [1]},
        {"items"},
        id="loop-else",
    ),
    pytest.param(
        "{{ items|length }} {{ count }}",
        {"items": [], "count": 0},
        {"items", "count"},
        id="digest-shape",
    ),
    pytest.param(
        "{% set greeting = 'Hi' %}{{ greeting }} {{ name }}",
        {"name": "a"},
        {"name"},
        id="set-local",
    ),
    pytest.param("{% set who = name %}{{ who }}", {"name": "a"}, {"name"}, id="set-alias"),
    pytest.param("{% set who = name|default('you') %}{{ who }}", {}, set(), id="set-default"),
    pytest.param(
        "{% set who = user.name %}", {"user": {"name": "a"}}, {"user"}, id="set-attribute"
    ),
    pytest.param(
        "{% if c %}{% set y = 1 %}{% endif %}{{ y }}", {"c": True}, {"c"}, id="set-in-branch"
    ),
    pytest.param(
        "{% set s %}{{ inner }}{% endset %}{{ s }}", {"inner": 1}, {"inner"}, id="set-block"
    ),
    pytest.param("{% with q = p %}{{ q }}{% endwith %}", {"p": 1}, set(), id="with"),
    pytest.param("{% with %}{{ w }}{% endwith %}", {"w": 1}, {"w"}, id="with-body"),
    pytest.param(
        "{% macro m(a) %}{{ a }}{{ z }}{% endmacro %}{{ m(1) }}", {"z": 1}, set(), id="macro"
    ),
    pytest.param(
        "{% macro m() %}{{ caller() }}{% endmacro %}{% call m() %}{{ c }}{% endcall %}",
        {"c": 1},
        set(),
        id="call-block",
    ),
    pytest.param(
        "{% filter upper %}{{ fu }}{% endfilter %}", {"fu": "a"}, {"fu"}, id="filter-block"
    ),
    pytest.param("{% block b %}{{ bb }}{% endblock %}", {"bb": 1}, {"bb"}, id="block"),
    pytest.param(
        "{% autoescape false %}{{ raw }}{% endautoescape %}", {"raw": 1}, {"raw"}, id="autoescape"
    ),
    # Nested keys count as their top-level name only.
    pytest.param(
        "{{ order.id }} {{ order['total'] }}",
        {"order": {"id": 1, "total": 2}},
        {"order"},
        id="attribute",
    ),
    pytest.param("{{ order.id is defined }}", {"order": {}}, {"order"}, id="attribute-test"),
    pytest.param("{{ a and b }} {{ c or d }}", {"a": False, "c": True}, {"a", "c"}, id="and-or"),
    pytest.param(
        "{{ not n }} {{ -m }} {{ p + 1 }} {{ q ~ r }}",
        {"n": 1, "m": 1, "p": 1, "q": 1, "r": 1},
        {"n", "m", "p", "q", "r"},
        id="operators",
    ),
    pytest.param(
        "{{ a == b }} {{ c < 3 < d }}", {"a": 1, "b": 1, "c": 5}, {"a", "b", "c"}, id="comparisons"
    ),
    pytest.param("{{ e in f }}", {"f": []}, {"f"}, id="in"),
    pytest.param("{{ x is none }} {{ y is string }}", {}, set(), id="tests"),
    pytest.param("{{ [l1, l2]|length }} {{ {'k': v}|length }}", {}, set(), id="literals"),
    pytest.param("{{ fn(arg) }}", {"fn": str, "arg": 1}, {"fn"}, id="call"),
    pytest.param("{{ range(3)|list }} {{ loop is defined }}", {}, set(), id="globals"),
    pytest.param(
        "{{ unsubscribe_url }}", {"unsubscribe_url": "u"}, {"unsubscribe_url"}, id="unsubscribe-url"
    ),
    pytest.param("{{ a.b.c }}", {"a": {"b": {"c": 1}}}, {"a"}, id="deep-attribute"),
    pytest.param("{{ d[key] }}", {"d": {"k": 1}, "key": "k"}, {"d"}, id="item-by-variable"),
    pytest.param("{{ 'x' if c else y }}", {"c": True}, {"c"}, id="branch-expression"),
]


def render(source: str, data: dict[str, Any]) -> str:
    return render_source(source, data, autoescape=True)


@pytest.mark.parametrize(("source", "data", "needed"), CASES)
def test_required_variables(source: str, data: dict[str, Any], needed: set[str]) -> None:
    render(source, data)  # the case's data is enough
    assert required_variables(source) == needed
    for name in needed:  # and each needed name is: the render fails without it
        without = {key: value for key, value in data.items() if key != name}
        with pytest.raises(UndefinedError):
            render(source, without)


@pytest.mark.parametrize(
    "source",
    [
        "{{ x|default('a') }}",
        "{% if x is defined %}{{ x }}{% endif %}",
        "{{ x|d('b')|upper }}",
        "{% if premium %}{{ code }}{% endif %}",
    ],
)
def test_what_is_not_required_renders_without_it(source: str) -> None:
    data = {"premium": False}
    assert not required_variables(source) - data.keys()
    render(source, data)


@pytest.mark.parametrize(
    "source",
    [
        "{% include 'other' %}{{ a }}",
        "{% extends 'base' %}{% block b %}{{ a }}{% endblock %}",
        "{% import 'm' as m %}{{ a }}",
        "{{ a ",  # does not parse
    ],
)
def test_templates_that_never_render_need_nothing(source: str) -> None:
    assert required_variables(source) == frozenset()


@pytest.mark.parametrize("name", sorted(_FORCING_FILTERS))
def test_every_forcing_filter_fails_on_an_undefined_value(name: str) -> None:
    with pytest.raises(UndefinedError):
        render(f"{{% set _ = x|{name} %}}", {})


def test_default_filter_takes_an_undefined_value() -> None:
    assert render("{{ x|default('a') }}{{ y|d('b', true) }}", {}) == "ab"


def request(**fields: Any) -> NotificationRequest:
    return NotificationRequest.model_validate(
        {"channel": "email", "user_id": "u1", "template": "welcome", **fields}
    )


def versions(
    *rows: tuple[Channel, str, int, set[str]],
) -> dict[tuple[str, Channel], list[TemplateVersion]]:
    found: dict[tuple[str, Channel], list[TemplateVersion]] = {}
    for channel, locale, number, needs in rows:
        found.setdefault(("welcome", channel), []).append(
            TemplateVersion(locale, number, frozenset(needs))
        )
    return found


def test_missing_data_names_the_variables_and_the_version() -> None:
    problem = missing_data(
        request(data={"name": "Ada"}), versions((Channel.email, "en", 3, {"name", "code"}))
    )
    assert problem is not None and problem.field == "data"
    assert problem.message == "template 'welcome' (email, version 3) needs data: code"
    given = request(data={"name": "Ada", "code": "1"})
    assert missing_data(given, versions((Channel.email, "en", 3, {"name", "code"}))) is None


def test_the_unsubscribe_url_is_supplied_by_the_render() -> None:
    needs = versions((Channel.email, "en", 1, {"unsubscribe_url"}))
    assert missing_data(request(), needs) is None


def test_a_request_locale_picks_its_version() -> None:
    both = versions((Channel.email, "en", 2, {"name"}), (Channel.email, "fr", 5, {"nom"}))
    problem = missing_data(request(locale="fr-CA", data={"name": "Ada"}), both)
    assert problem is not None
    assert problem.message == "template 'welcome' (email, version 5) needs data: nom"
    assert missing_data(request(locale="en", data={"name": "Ada"}), both) is None


def test_without_a_locale_only_what_every_locale_needs_is_missing() -> None:
    # The recipient's locale picks the version when it renders.
    both = versions((Channel.email, "en", 2, {"name", "code"}), (Channel.email, "fr", 5, {"code"}))
    problem = missing_data(request(data={}), both)
    assert problem is not None
    assert problem.message == "template 'welcome' (email, versions 2 (en), 5 (fr)) needs data: code"
    assert missing_data(request(data={"code": 1}), both) is None


def test_fallback_channels_are_checked_too() -> None:
    needs = versions((Channel.email, "en", 1, {"name"}), (Channel.sms, "en", 4, {"phone_code"}))
    problem = missing_data(request(fallback=["sms"], data={"name": "Ada"}), needs)
    assert problem is not None
    assert problem.message == "template 'welcome' (sms, version 4) needs data: phone_code"
