"""The metric names a PromQL expression selects, for the tests that check alert rules
against what Herald exports: a small tokenizer, not a PromQL parser, which is all the
rules in deploy/ need (no ``__name__`` matchers, no subqueries)."""

from __future__ import annotations

import re

# Words that are PromQL, not a metric: operators, modifiers and the names of functions
# and aggregations (those are also recognised by the "(" that follows them).
KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
}
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_OFFSET = re.compile(r"\boffset\s+-?[0-9a-z]+", re.I)
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_WORD = re.compile(r"(?<![A-Za-z0-9_:.])[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """Every metric name ``expr`` selects."""
    for pattern in (_STRING, _MATCHERS, _RANGE, _OFFSET, _GROUPING):
        expr = pattern.sub(" ", expr)
    names = set()
    for match in _WORD.finditer(expr):
        word = match.group(0)
        if word.lower() in KEYWORDS or expr[match.end() :].lstrip().startswith("("):
            continue
        names.add(word)
    return names
