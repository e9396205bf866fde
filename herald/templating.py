"""The jinja2 sandbox templates render in, with bounds on the work one render may do.

jinja2's ``SandboxedEnvironment`` already refuses attribute walks such as
``__class__``/``__globals__`` and caps a single ``range``. A template is untrusted
input, so Herald bounds the rest of what could stall a worker or exhaust its memory:

- every loop and every ``range`` draws from one budget of iterations per render, so
  nested loops over request data cannot multiply into billions of steps;
- ``*`` (repetition), ``**`` and ``%`` formatting, ``str.format`` widths, and numeric
  arguments to filters and methods (``center``, ``indent``, ``ljust``, ...) are capped;
- any intermediate string or list, and the output, is capped in size.

Breaking a bound raises ``SecurityError``; the render fails for good, with the reason.
"""

from __future__ import annotations

import contextvars
import functools
import html
import re
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

MAX_ITERATIONS = 100_000
MAX_OUTPUT_CHARS = 256 * 1024
MAX_NUMBER_ARGUMENT = 1_000
MAX_EXPONENT = 64
_BOUNDED = "_herald_bounded"
# Filters and str methods whose numeric argument sets how much they produce.
_GROWING_FILTERS = frozenset({"center", "indent", "batch", "slice", "wordwrap"})
_GROWING_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
_WIDE_FORMAT = re.compile(r"%[-#0 +]*\d{4,}|\{[^{}]*:[^{}]*\d{4,}[^{}]*\}")

_budget: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "herald_template_budget", default=None
)


def _spend(count: int) -> None:
    budget = _budget.get()
    if budget is None:
        return
    budget[0] -= count
    if budget[0] < 0:
        raise SecurityError(f"template loops over more than {MAX_ITERATIONS} items")


def _bounded(iterable: Iterable[Any]) -> Iterator[Any]:
    """Every item a template loop takes is paid for from the render's budget."""
    for item in iterable:
        _spend(1)
        yield item


def _bounded_range(*args: int) -> range:
    _check_numbers(args)
    numbers = range(*args)
    _spend(len(numbers))
    return numbers


def _check_numbers(values: Iterable[Any]) -> None:
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > MAX_ITERATIONS:
                raise SecurityError(f"number {value} is too large for a template")


def _check_size(value: Any) -> Any:
    if isinstance(value, str | list | tuple | bytes) and len(value) > MAX_OUTPUT_CHARS:
        raise SecurityError(f"template value grew past {MAX_OUTPUT_CHARS} characters")
    return value


def _check_arguments(args: Iterable[Any], kwargs: dict[str, Any]) -> None:
    for value in [*args, *kwargs.values()]:
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > MAX_NUMBER_ARGUMENT:
                raise SecurityError(
                    f"argument {value} is too large (at most {MAX_NUMBER_ARGUMENT})"
                )


def _check_format(value: Any) -> None:
    if isinstance(value, str) and _WIDE_FORMAT.search(value):
        raise SecurityError("format width too large")


def _guard_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    # Filters marked pass_context/pass_eval_context/pass_environment get that first.
    skip = 2 if hasattr(function, "jinja_pass_arg") else 1

    @functools.wraps(function)  # keeps jinja's pass_* mark
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if name in _GROWING_FILTERS:
            _check_arguments(args[skip:], kwargs)
        elif name == "format" and len(args) >= skip:
            _check_format(args[skip - 1])
        return _check_size(function(*args, **kwargs))

    return guarded


class _LoopBudgetTransformer:
    """Wraps the iterable of every ``{% for %}`` in the budget filter."""

    @staticmethod
    def apply(template: nodes.Template) -> nodes.Template:
        for loop in template.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, _BOUNDED, [], [], None, None)
        return template


class TemplateSandbox(SandboxedEnvironment):
    """``SandboxedEnvironment`` plus Herald's work bounds (see the module docstring)."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(autoescape=autoescape, undefined=StrictUndefined)
        self.globals["range"] = _bounded_range
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}
        self.filters[_BOUNDED] = _bounded

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        """Refuse repetition, powers and ``%`` formats that would be huge."""
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponent {right} is too large")
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if isinstance(sequence, Sized) and isinstance(times, int):
                    if len(sequence) * times > MAX_OUTPUT_CHARS:
                        raise SecurityError("repetition too large")
        if operator == "%" and isinstance(left, str) and _WIDE_FORMAT.search(left):
            raise SecurityError("format width too large")
        return _check_size(super().call_binop(context, operator, left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Method and function calls: bounded growth and result size."""
        name = getattr(__obj, "__name__", None)
        if name in _GROWING_METHODS:
            _check_arguments(args, kwargs)
        elif name == "replace" and len(args) >= 2:
            _check_replace(getattr(__obj, "__self__", None), args[0], args[1])
        elif name in ("format", "format_map"):  # str.format, wrapped by the sandbox
            _check_format(getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None))
        return _check_size(super().call(__context, __obj, *args, **kwargs))

    def compile_bounded(self, source: str) -> Any:
        """Parse, put every loop on the budget, and compile."""
        return self.from_string(_LoopBudgetTransformer.apply(self.parse(source)))


def _check_replace(text: Any, old: Any, new: Any) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        hits = text.count(old) if old else len(text) + 1
        if len(text) + hits * (len(new) - len(old)) > MAX_OUTPUT_CHARS:
            raise SecurityError("replacement too large")


_ENVIRONMENTS = {autoescape: TemplateSandbox(autoescape=autoescape) for autoescape in (False, True)}


@functools.lru_cache(maxsize=4096)
def _compile(source: str, autoescape: bool) -> Any:
    return _ENVIRONMENTS[autoescape].compile_bounded(source)


def render_source(source: str, data: dict[str, Any], *, autoescape: bool) -> str:
    """Render one template string within the bounds (compiled once per process)."""
    token = _budget.set([MAX_ITERATIONS])
    try:
        size = 0
        chunks = []
        for chunk in _compile(source, autoescape).generate(**data):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise SecurityError(f"rendered output is longer than {MAX_OUTPUT_CHARS} characters")
            chunks.append(chunk)
        return "".join(chunks)
    finally:
        _budget.reset(token)


DEFAULT_LOCALE = "en"
_TAGS = re.compile(r"<[^>]+>")


def pick_locale(available: list[str], wanted: str | None) -> str | None:
    """Exact locale, then its language, then English, then whatever exists (the render
    step and the API's preview choose alike)."""
    candidates = []
    if wanted:
        candidates += [wanted, wanted.replace("_", "-").split("-")[0]]
    candidates.append(DEFAULT_LOCALE)
    lowered = {locale.lower(): locale for locale in available}
    for candidate in candidates:
        if candidate.lower() in lowered:
            return lowered[candidate.lower()]
    return sorted(available)[0] if available else None


def plain_text(body_html: str) -> str:
    """An HTML body as the plain-text alternative of its email."""
    return html.unescape(_TAGS.sub("", body_html)).strip()
