"""The jinja2 sandbox templates render in, bounded in output size and CPU time.

jinja2's ``SandboxedEnvironment`` already refuses attribute walks such as
``__class__``/``__globals__``. A template is untrusted input, so every render (preview,
save check, send) is also bounded by :class:`RenderLimits`, whatever the template does:

- **size**: the output (in UTF-8 bytes) and every string or list the template builds
  stay within ``max_bytes``. Operations whose result can be much larger than their
  inputs are refused *before* they run, from their arguments: ``+``, ``~``, ``*``,
  ``**``, ``%`` and ``str.format`` (widths and precisions found by a linear scan, each
  field counted), ``join``, ``replace``, ``center``/``ljust``/``indent``/``wordwrap``
  and the like, ``batch``/``slice``, and turning a list or dict into text. A list
  counts ``ITEM_BYTES`` per item. C-level work cannot be interrupted, so these checks
  are what keeps any one step small;
- **time**: a deadline in CPU time of the rendering thread, checked at every loop
  iteration, function, method, macro and filter call, operator and output chunk. Every
  step between two checks is small, by the size checks, so the render stops within a
  few milliseconds of the deadline.

Over a limit raises :class:`RenderLimitExceeded` (a ``SecurityError``), whose message
names the limit; the render fails for good. A render takes the calling thread for up
to the time limit: async callers run it off their event loop (``asyncio.to_thread``).
"""

from __future__ import annotations

import contextvars
import functools
import html
import inspect
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass
from string import Formatter
from typing import TYPE_CHECKING, Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, nodes, pass_eval_context
from jinja2.exceptions import SecurityError
from jinja2.nodes import EvalContext
from jinja2.runtime import markup_join, str_join
from jinja2.sandbox import SandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.utils import Namespace, generate_lorem_ipsum
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

if TYPE_CHECKING:
    from herald.settings import Settings

# What a list, tuple, dict or set costs per item (a pointer) against the size limit.
ITEM_BYTES = 8
# Integers stay small: multiplying huge ones is C work the deadline cannot interrupt.
MAX_INT_BITS = 64 * 1024
# A filter given more than this (characters, or items) runs with a trace function that
# checks the deadline at each Python call: jinja's filters loop in Python (urlize, sort
# with a key, pprint, ...) where no template code runs.
_TRACED_INPUT = 16 * 1024
# jinja's urlize runs a regex that is quadratic in the length of a word (about 4 s for
# 10,000 characters): its cost is known in advance, so a longer word is refused.
_URLIZE_MAX_WORD = 2000
_BOUNDED = "_herald_bounded"
_CONCAT = "_herald_concat"
_DIGITS = re.compile(r"\d+")  # linear: no nested or overlapping repetition


@dataclass(frozen=True)
class RenderLimits:
    """How much one render may produce and spend (``HERALD_RENDER_MAX_BYTES``/``_MS``)."""

    max_bytes: int = 1024 * 1024
    max_ms: int = 500

    @classmethod
    def of(cls, settings: Settings) -> RenderLimits:
        """The limits a process's settings name."""
        return cls(max_bytes=settings.render_max_bytes, max_ms=settings.render_max_ms)


class RenderLimitExceeded(SecurityError):
    """A render went over its size or time limit; the message names the limit."""


class _Render:
    """The limits and the deadline of the render running on this thread."""

    __slots__ = ("cpu_deadline", "limits", "max_items", "wall_deadline")

    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.max_items = max(1, limits.max_bytes // ITEM_BYTES)
        # Set once the template is compiled: compiling is bounded by the source's size.
        self.wall_deadline = self.cpu_deadline = float("inf")

    def start_clock(self) -> None:
        seconds = self.limits.max_ms / 1000
        self.wall_deadline = time.perf_counter() + seconds
        self.cpu_deadline = time.thread_time() + seconds

    def check_time(self) -> None:
        # A thread spends no more CPU than wall time: the cheap wall clock (about 0.1 µs)
        # rules the CPU clock (a system call, about 1.5 µs) out until the wall deadline.
        if time.perf_counter() < self.wall_deadline:
            return
        if time.thread_time() > self.cpu_deadline:
            raise self.overtime()

    def overtime(self, why: str = "") -> RenderLimitExceeded:
        suffix = f" ({why})" if why else ""
        return RenderLimitExceeded(f"template rendering exceeded {self.limits.max_ms} ms{suffix}")

    def refuse(self, what: str) -> RenderLimitExceeded:
        return RenderLimitExceeded(
            f"template output exceeds {self.limits.max_bytes} bytes ({what})"
        )

    def check_chars(self, size: int, what: str) -> None:
        if size > self.limits.max_bytes:
            raise self.refuse(f"{what} of {size} characters")

    def check_items(self, count: int, what: str) -> None:
        if count > self.max_items:
            raise self.refuse(f"{what} of {count} items")

    def check_value(self, value: Any) -> Any:
        """A value just built: refused if it is a string or a collection past the limit."""
        if isinstance(value, str | bytes):
            self.check_chars(len(value), "a string")
        elif isinstance(value, list | tuple | dict | set | frozenset):
            self.check_items(len(value), "a list")
        elif isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
            raise self.refuse(f"a number of {value.bit_length()} bits")
        return value

    def text_size(self, value: Any) -> int:
        """About how long ``str(value)`` is, stopping early once past the limit: a list
        of references to one big string is big as text though small in memory."""
        if isinstance(value, str | bytes):
            return len(value)
        if value is None or isinstance(value, float | bool):
            return 8
        limit = self.limits.max_bytes
        total, pending = 0, [value]
        while pending and total <= limit:
            item = pending.pop()
            kind = type(item)  # the common JSON types first, without isinstance chains
            if kind is str:
                total += len(item) + 2
            elif kind is dict:
                total += 2 + 2 * len(item)
                pending.extend(item)
                pending.extend(item.values())
            elif kind is list:
                total += 2 + 2 * len(item)
                pending.extend(item)
            elif kind is int or kind is float or kind is bool or item is None:
                total += 8 if kind is not int else item.bit_length() // 3 + 2
            elif isinstance(item, str | bytes):
                total += len(item) + 2
            elif isinstance(item, Mapping):
                total += 2 + 2 * len(item)
                pending.extend(item.keys())
                pending.extend(item.values())
            elif isinstance(item, list | tuple | set | frozenset):
                total += 2 + 2 * len(item)
                pending.extend(item)
            elif isinstance(item, Namespace):  # its repr shows what it holds
                total += 16
                pending.append(getattr(item, "_Namespace__attrs", {}))
            elif isinstance(item, int) and not isinstance(item, bool):
                total += item.bit_length() // 3 + 2
            else:
                total += 8
        return total

    def check_text(self, value: Any, what: str) -> None:
        """Refuse turning ``value`` into text when the text would be past the limit."""
        if isinstance(value, str | bytes):
            self.check_chars(len(value), what)
        elif not isinstance(value, int | float | bool | None):
            self.check_chars(self.text_size(value), what)


_current: contextvars.ContextVar[_Render | None] = contextvars.ContextVar(
    "herald_render", default=None
)
# Outside a render (jinja folding constants while it compiles) the defaults apply.
_DEFAULT_RENDER = _Render(RenderLimits())


def _render() -> _Render:
    render = _current.get()
    return _DEFAULT_RENDER if render is None else render


def _step() -> _Render:
    """The current render, after checking its deadline."""
    render = _render()
    render.check_time()
    return render


# --- size estimates of operations that can grow far past their inputs ----------------


def _number(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _spec_size(spec: str) -> int:
    """The widest field a format spec (``>10``, ``.3f``, ``010d``) may ask for: its
    largest run of digits, read by a linear scan."""
    widest = 0
    for match in _DIGITS.finditer(spec):
        if match.end() - match.start() > 18:  # certainly over any limit
            return 10**18
        widest = max(widest, int(match.group()))
    return widest


def _percent_size(render: _Render, template: str, args: Any) -> int:
    """An upper estimate of ``template % args`` from one linear pass over the
    conversions: each adds its width or precision and the text of its argument."""
    positional = list(args) if isinstance(args, tuple) else [args]
    mapping = args if isinstance(args, Mapping) else None
    size, at, end = len(template), 0, len(template)
    while (at := template.find("%", at)) >= 0 and size <= render.limits.max_bytes:
        at += 1
        key = None
        if at < end and template[at] == "(":
            close = template.find(")", at)
            close = end if close < 0 else close
            key, at = template[at + 1 : close], close + 1
        spec_end = at
        while spec_end < end and template[spec_end] in "#0- +*.0123456789hlL":
            if template[spec_end] == "*" and positional:  # a width or precision argument
                size += max(0, _number(positional.pop(0)))
            spec_end += 1
        value: Any = None
        if spec_end < end and template[spec_end] == "%":  # ``%%``
            pass
        elif key is not None:
            value = mapping.get(key) if mapping is not None else None
        elif positional:
            value = positional.pop(0)
        size += _spec_size(template[at:spec_end]) + render.text_size(value)
        at = spec_end + 1
    return size


def _replace_size(text: Any, old: Any, new: Any, count: Any = -1) -> int:
    if not all(isinstance(part, str | bytes) for part in (text, old, new)):
        return 0
    hits = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * max(0, len(new) - len(old))


def _join_size(render: _Render, separator: Any, items: list[Any]) -> int:
    parts = sum(render.text_size(item) - 2 for item in items)
    return parts + len(str(separator)) * max(0, len(items) - 1)


def _repeat_size(render: _Render, left: Any, right: Any) -> None:
    for sequence, times in ((left, right), (right, left)):
        if isinstance(times, int) and not isinstance(times, bool):
            if isinstance(sequence, str | bytes):
                render.check_chars(len(sequence) * times, f"a repetition by {times}")
            elif isinstance(sequence, list | tuple):
                render.check_items(len(sequence) * times, f"a repetition by {times}")
            elif isinstance(sequence, int) and not isinstance(sequence, bool):
                bits = sequence.bit_length() + times.bit_length()
                if bits > MAX_INT_BITS:
                    raise render.refuse(f"a number of about {bits} bits")


def _check_binop(render: _Render, operator: str, left: Any, right: Any) -> None:
    if operator == "+":
        if isinstance(left, str | bytes) and isinstance(right, str | bytes):
            render.check_chars(len(left) + len(right), "a concatenation")
        elif isinstance(left, list | tuple) and isinstance(right, list | tuple):
            render.check_items(len(left) + len(right), "a concatenation")
    elif operator == "*":
        _repeat_size(render, left, right)
    elif operator == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            bits = left.bit_length() * right
            if bits > MAX_INT_BITS:
                raise render.refuse(f"a number of about {bits} bits")
    elif operator == "%" and isinstance(left, str | bytes):
        text = left.decode(errors="replace") if isinstance(left, bytes) else left
        render.check_chars(_percent_size(render, text, right), "a % format")


# --- str/bytes/list methods a template may call ---------------------------------------


def _method_checks(
    render: _Render, owner: Any, name: str, args: tuple[Any, ...]
) -> tuple[Any, ...]:
    """Refuse a method call whose result would be past the limit; returns the arguments
    (an iterator given to ``join`` is read once, here, and passed on as a list)."""
    if isinstance(owner, str | bytes):
        if name in ("center", "ljust", "rjust", "zfill") and args:
            render.check_chars(max(len(owner), _number(args[0])), f"{name}()")
        elif name == "expandtabs":
            tabs = owner.count("\t") if isinstance(owner, str) else owner.count(b"\t")
            render.check_chars(len(owner) + tabs * (_number(args[0]) if args else 8), name)
        elif name == "replace" and len(args) >= 2:
            render.check_chars(_replace_size(owner, *args[:3]), "replace()")
        elif name == "join" and args:
            items = list(args[0])
            render.check_items(len(items), "join()")
            render.check_chars(_join_size(render, owner, items), "join()")
            return (items, *args[1:])
        elif name == "translate" and args and isinstance(args[0], Mapping):
            widest = max((render.text_size(v) for v in args[0].values()), default=1)
            render.check_chars(len(owner) * widest, "translate()")
    elif isinstance(owner, list) and name == "extend" and args and hasattr(args[0], "__len__"):
        render.check_items(len(owner) + len(args[0]), "extend()")
    return args


# --- filters --------------------------------------------------------------------------

# Filters that turn their value into text: a list or dict is measured first.
_TEXT_FILTERS = frozenset(
    {
        "capitalize", "center", "e", "escape", "filesizeformat", "forceescape", "format",
        "indent", "lower", "pprint", "replace", "safe", "string", "striptags", "title",
        "tojson", "trim", "truncate", "upper", "urlencode", "urlize", "wordcount",
        "wordwrap", "xmlattr",
    }
)  # fmt: skip
# Filters given an iterator read it once, in the guard, to measure it.
_LIST_FILTERS = frozenset({"join", "sum"})
# Filters whose arguments say how much they produce.
_SIZED_BY_ARGUMENTS = frozenset(
    {"batch", "center", "format", "indent", "join", "replace", "slice", "sum", "tojson", "wordwrap"}
)


def _filter_checks(render: _Render, name: str, value: Any, bound: dict[str, Any]) -> None:
    """Refuse a filter whose result would be past the limit, from its arguments."""
    if name in _TEXT_FILTERS and name != "tojson":  # tojson: measured below
        render.check_text(value, name)
    text = value if isinstance(value, str) else ""
    if name == "center":
        render.check_chars(max(len(text), _number(bound.get("width", 80))), name)
    elif name == "indent":
        width = bound.get("width", 4)
        indent = len(width) if isinstance(width, str) else _number(width)
        render.check_chars(len(text) + (text.count("\n") + 1) * indent, name)
    elif name == "wordwrap":
        # Two lines together are longer than the width, so at most 2n/width + 1 lines.
        lines = 2 * len(text) // max(1, _number(bound.get("width", 79))) + 1
        wrap = str(bound.get("wrapstring") or "\n")
        render.check_chars(len(text) + lines * len(wrap), name)
    elif name == "urlize" and text:
        longest = max(map(len, text.split()), default=0)
        if longest > _URLIZE_MAX_WORD:
            raise render.overtime(f"urlize of a {longest}-character word")
    elif name == "replace":
        size = _replace_size(value, bound.get("old"), bound.get("new"), bound.get("count"))
        render.check_chars(size, name)
    elif name == "format" and text:
        args = bound.get("kwargs") or bound.get("args") or ()
        render.check_chars(_percent_size(render, text, args), name)
    elif name in ("batch", "slice"):
        render.check_items(_number(bound.get("linecount", bound.get("slices"))), name)
    elif name == "tojson":
        indent = bound.get("indent") or 0
        width = len(indent) if isinstance(indent, str) else _number(indent)
        render.check_chars(render.text_size(value) * (1 + width), name)
    elif name == "join" and isinstance(value, list | tuple):
        render.check_chars(_join_size(render, bound.get("d", ""), list(value)), name)
    elif name == "sum" and not isinstance(bound.get("start", 0), int | float):
        render.check_text(value, name)  # adding up lists: the items of them all


def _guard_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    # Filters marked pass_context/pass_eval_context/pass_environment get that first.
    first = 1 if hasattr(function, "jinja_pass_arg") else 0
    # jinja's async-ready filters add that argument around a function without it.
    unbound = first if not hasattr(inspect.unwrap(function), "jinja_pass_arg") else 0
    parameters = inspect.signature(function).parameters.values()  # of the wrapped one
    positional = [p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]

    @functools.wraps(function)  # keeps jinja's pass_* mark
    def guarded(*args: Any, **kwargs: Any) -> Any:
        render = _step()
        value = args[first] if len(args) > first else None
        if name in _LIST_FILTERS and not isinstance(value, list | tuple | str | None):
            value = list(value)
            args = (*args[:first], value, *args[first + 1 :])
        bound: dict[str, Any] = {}
        if name in _SIZED_BY_ARGUMENTS:  # the arguments by name (a full bind costs more)
            given = args[unbound:]
            bound = {**dict(zip(positional, given, strict=False)), **kwargs}
            bound["args"], bound["kwargs"] = given[len(positional) :], kwargs
        _filter_checks(render, name, value, bound)
        # An undefined value is never measured: ``default`` and the tests take it as it is.
        if (
            isinstance(value, Sized)
            and not isinstance(value, Undefined)
            and len(value) > _TRACED_INPUT
        ):
            return render.check_value(_traced(render, function, args, kwargs))
        return render.check_value(function(*args, **kwargs))

    return guarded


def _traced(
    render: _Render, function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """``function(*args, **kwargs)`` with the deadline checked at every Python call it
    makes (on this thread only; no line events, so the cost is one check per call)."""

    def at_call(frame: Any, event: str, arg: Any) -> None:
        render.check_time()

    previous = sys.gettrace()
    sys.settrace(at_call)
    try:
        return function(*args, **kwargs)
    finally:
        sys.settrace(previous)


@pass_eval_context
def _concat(eval_ctx: EvalContext, values: tuple[Any, ...]) -> str:
    """``a ~ b``: refused before the text is built when it would be past the limit."""
    render = _step()
    render.check_chars(sum(render.text_size(value) for value in values), "a ~ concatenation")
    return markup_join(values) if eval_ctx.autoescape else str_join(values)


def _bounded(iterable: Iterable[Any]) -> Iterable[Any]:
    """Every item a ``{% for %}`` loop takes checks the deadline."""
    render = _render()
    for item in iterable:
        render.check_time()
        yield item


def _bounded_range(*args: int) -> range:
    numbers = range(*args)
    _step().check_items(len(numbers), "range()")
    return numbers


def _bounded_lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    render = _step()
    render.check_chars(_number(n) * _number(max) * 12, "lipsum()")
    return generate_lorem_ipsum(n=n, html=html, min=min, max=max)


class _Bounds(Formatter):
    """``str.format`` within the limits: each field is measured before it is formatted
    (its spec's width and precision, and its value), and the fields add up."""

    _size = 0

    def vformat(self, format_string: str, args: Any, kwargs: Any) -> str:
        self._size = len(format_string)
        return super().vformat(format_string, args, kwargs)

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion is not None:
            _step().check_text(value, "a format field")
        return super().convert_field(value, conversion)

    def format_field(self, value: Any, format_spec: str) -> Any:
        render = _step()
        self._size += max(_spec_size(format_spec), render.text_size(value))
        render.check_chars(self._size, "a format")
        return super().format_field(value, format_spec)


class _BoundedFormatter(_Bounds, SandboxedFormatter):
    pass


class _BoundedEscapeFormatter(_Bounds, SandboxedEscapeFormatter):
    pass


class _TemplateBounds(NodeTransformer):
    """Every ``{% for %}`` iterates through the deadline check; every ``~`` goes
    through the size check."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)  # the loops inside first; it changes the node in place
        node.iter = nodes.Filter(node.iter, _BOUNDED, [], [], None, None)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Filter(nodes.Tuple(node.nodes, "load"), _CONCAT, [], [], None, None)


_FORMATS = frozenset({"format", "format_map"})


class TemplateSandbox(SandboxedEnvironment):
    """``SandboxedEnvironment`` plus Herald's size and time bounds (see the module)."""

    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(autoescape=autoescape, undefined=StrictUndefined, finalize=_finalize)
        self.globals["range"] = _bounded_range
        self.globals["lipsum"] = _bounded_lipsum
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}
        self.filters[_BOUNDED] = _bounded
        self.filters[_CONCAT] = _concat

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        """``+``, ``*``, ``**`` and ``%``: refused before building anything too big."""
        render = _step()
        _check_binop(render, operator, left, right)
        return render.check_value(super().call_binop(context, operator, left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Functions, methods and macros: the deadline, and bounded growth and size."""
        render = _step()
        owner = getattr(__obj, "__self__", None)
        if owner is not None:
            args = _method_checks(render, owner, getattr(__obj, "__name__", ""), args)
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(owner, list | dict | set):  # append, insert, update, ...
            render.check_value(owner)
        return render.check_value(result)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format``/``format_map`` through the bounded formatters."""
        owner = getattr(value, "__self__", None)
        if not isinstance(owner, str) or getattr(value, "__name__", None) not in _FORMATS:
            return None
        formatter: SandboxedFormatter = (
            _BoundedEscapeFormatter(self, escape=owner.escape)
            if isinstance(owner, Markup)
            else _BoundedFormatter(self)
        )
        str_type, is_map = type(owner), value.__name__ == "format_map"

        def bounded(*args: Any, **kwargs: Any) -> str:
            if is_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                return str_type(formatter.vformat(owner, (), args[0]))
            return str_type(formatter.vformat(owner, args, kwargs))

        return functools.update_wrapper(bounded, value)

    def concat(self, parts: Iterable[str]) -> str:
        """The text of a ``{% set %}`` block, a macro or a filter block, checked before
        it is joined."""
        parts = list(parts)
        render = _step()
        render.check_chars(sum(map(len, parts)), "a block")
        return "".join(parts)

    def compile_bounded(self, source: str) -> Any:
        """Parse, route loops and ``~`` through the bounds, and compile."""
        return self.from_string(_TemplateBounds().visit(self.parse(source)))


def _finalize(value: Any) -> Any:
    """``{{ value }}``: a list or dict is measured before it is turned into text."""
    if not isinstance(value, str | int | float | bool | None):
        _step().check_text(value, "a value")
    return value


def _chunks(template: Any, data: dict[str, Any]) -> Iterator[str]:
    try:
        yield from template.generate(**data)
    except RecursionError as err:  # macros or recursive loops calling themselves
        raise SecurityError("template recursion is too deep") from err


def _utf8_size(chunk: str) -> int:
    return len(chunk) if chunk.isascii() else len(chunk.encode("utf-8", "surrogatepass"))


_ENVIRONMENTS = {autoescape: TemplateSandbox(autoescape=autoescape) for autoescape in (False, True)}


@functools.lru_cache(maxsize=4096)
def _compile(source: str, autoescape: bool) -> Any:
    return _ENVIRONMENTS[autoescape].compile_bounded(source)


def render_source(
    source: str, data: dict[str, Any], *, autoescape: bool, limits: RenderLimits | None = None
) -> str:
    """Render one template string within ``limits`` (compiled once per process).

    Raises :class:`RenderLimitExceeded` over a limit, ``SecurityError`` for an unsafe
    operation, and jinja's errors (syntax, undefined variable) as they come. Blocks the
    calling thread for up to the time limit.
    """
    render = _Render(limits or RenderLimits())
    token = _current.set(render)
    try:
        template = _compile(source, autoescape)
        render.start_clock()
        size, chunks = 0, []
        for chunk in _chunks(template, data):
            render.check_time()
            size += _utf8_size(chunk)
            if size > render.limits.max_bytes:
                raise RenderLimitExceeded(
                    f"template output exceeds {render.limits.max_bytes} bytes"
                )
            chunks.append(chunk)
        return "".join(chunks)
    finally:
        _current.reset(token)


DEFAULT_LOCALE = "en"
# A tag cannot contain "<": each match attempt stops at the next one, so the scan is
# linear (``<[^>]+>`` is quadratic on a run of "<").
_TAGS = re.compile(r"<[^<>]+>")


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


# --- the variables a template cannot render without -----------------------------------

# Filters that use their value at once, so an undefined one fails the render. Others
# (``default``/``d``, ``items``, and the lazy ``map``/``select``/... ) may take it as it is.
_FORCING_FILTERS = frozenset(
    {
        "capitalize", "center", "count", "dictsort", "e", "escape", "filesizeformat",
        "first", "float", "forceescape", "format", "indent", "int", "join", "last",
        "length", "list", "lower", "max", "min", "random", "reverse", "safe", "sort",
        "string", "striptags", "sum", "title", "trim", "truncate", "upper", "urlencode",
        "urlize", "wordcount", "wordwrap", "xmlattr",
    }
)  # fmt: skip
# Comparisons that use both sides (``in`` uses the right side only: an empty list never
# compares its item).
_FORCING_COMPARISONS = frozenset({"eq", "ne", "lt", "lteq", "gt", "gteq"})
# Names a render supplies itself (jinja's, and the sandbox's globals).
_SUPPLIED = frozenset({"loop", "self", "super", "caller", "varargs", "kwargs"}) | frozenset(
    _ENVIRONMENTS[False].globals
)
# Statements that need another template: without a loader they never render, so their
# templates are not judged here.
_LOADS = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)


class _Requirements:
    """Walks what every render of a template certainly evaluates (see
    :func:`required_variables`), collecting the top-level names it cannot do without."""

    def __init__(self, template: nodes.Template) -> None:
        stores: dict[str, int] = {}
        for name in template.find_all(nodes.Name):
            if name.ctx != "load":
                stores[name.name] = stores.get(name.name, 0) + 1
        for macro in template.find_all(nodes.Macro):
            stores[macro.name] = stores.get(macro.name, 0) + 2  # never an alias
        self._stores = stores
        # A name set once, unconditionally, to a bare variable stands for that variable.
        self._aliases: dict[str, frozenset[str]] = {}
        self.required: set[str] = set()

    def statements(self, body: Iterable[nodes.Node]) -> None:
        for node in body:
            self.statement(node)

    def statement(self, node: nodes.Node) -> None:
        # Only what runs on every render counts: the branches of an ``if``, a loop's
        # body (the loop may be empty) and a macro's body (it may never be called) do not.
        if isinstance(node, nodes.Output):
            for child in node.nodes:
                self.required |= self.strict(child)
        elif isinstance(node, nodes.If):
            self.required |= self.strict(node.test)
        elif isinstance(node, nodes.For):
            self.required |= self.strict(node.iter)
        elif isinstance(node, nodes.Assign):
            self.required |= self.evaluated(node.node)
            target = node.target
            if isinstance(target, nodes.Name) and self._stores.get(target.name) == 1:
                self._aliases[target.name] = self.undefined_without(node.node)
        elif isinstance(node, nodes.AssignBlock | nodes.FilterBlock):
            self.statements(node.body)
        elif isinstance(node, nodes.With):
            for value in node.values:
                self.required |= self.evaluated(value)
            self.statements(node.body)
        elif isinstance(node, nodes.CallBlock):
            self.required |= self.evaluated(node.call)
        elif isinstance(node, nodes.ExprStmt):
            self.required |= self.evaluated(node.node)
        elif isinstance(
            node,
            nodes.Block | nodes.Scope | nodes.OverlayScope | nodes.ScopedEvalContextModifier,
        ):
            self.statements(node.body)

    def name(self, name: str) -> frozenset[str]:
        """The top-level names whose absence leaves ``name`` undefined."""
        if name in self._aliases:
            return self._aliases[name]
        if name in self._stores or name in _SUPPLIED:
            return frozenset()  # set somewhere in the template: maybe before this use
        return frozenset({name})

    def undefined_without(self, node: nodes.Node) -> frozenset[str]:
        """The names whose absence makes ``node``'s value undefined (no error yet)."""
        return self.name(node.name) if isinstance(node, nodes.Name) else frozenset()

    def strict(self, node: nodes.Node | None) -> set[str]:
        """Names missing which the render fails when ``node``'s value is used (printed,
        tested for truth, iterated, compared, computed with)."""
        if node is None:
            return set()
        return set(self.undefined_without(node)) | self.evaluated(node)

    def evaluated(self, node: nodes.Node | None) -> set[str]:
        """Names missing which the render fails just evaluating ``node``."""
        if node is None or isinstance(node, nodes.Name):
            return set()
        if isinstance(node, nodes.Getattr):
            return self.strict(node.node)
        if isinstance(node, nodes.Getitem):
            return self.strict(node.node) | self.evaluated(node.arg)
        if isinstance(node, nodes.Filter):
            value = self.strict(node.node) if node.name in _FORCING_FILTERS else set()
            return value | self.evaluated(node.node) | self._arguments(node)
        if isinstance(node, nodes.Test):
            return self.evaluated(node.node) | self._arguments(node)
        if isinstance(node, nodes.Call):
            return self.strict(node.node) | self._arguments(node)
        if isinstance(node, nodes.And | nodes.Or):
            return self.strict(node.left)  # the right side runs only sometimes
        if isinstance(node, nodes.BinExpr):
            return self.strict(node.left) | self.strict(node.right)
        if isinstance(node, nodes.UnaryExpr):
            return self.strict(node.node)
        if isinstance(node, nodes.CondExpr):
            return self.strict(node.test)
        if isinstance(node, nodes.Concat):
            return set().union(*(self.strict(part) for part in node.nodes))
        if isinstance(node, nodes.Compare):
            return self._compared(node)
        if isinstance(node, nodes.Tuple | nodes.List):
            return set().union(*(self.evaluated(item) for item in node.items))
        if isinstance(node, nodes.Dict):
            return set().union(
                *(self.evaluated(pair.key) | self.evaluated(pair.value) for pair in node.items)
            )
        if isinstance(node, nodes.MarkSafe | nodes.MarkSafeIfAutoescape):
            return self.evaluated(node.expr)
        return set()  # constants, slices, and whatever is not sure to fail

    def _arguments(self, node: nodes.Filter | nodes.Test | nodes.Call) -> set[str]:
        values: list[nodes.Node | None] = [*node.args, *(kw.value for kw in node.kwargs)]
        values += [node.dyn_args, node.dyn_kwargs]
        return set().union(*(self.evaluated(value) for value in values))

    def _compared(self, node: nodes.Compare) -> set[str]:
        # Only the first comparison of a chain always runs.
        names = self.evaluated(node.expr)
        first = node.ops[0] if node.ops else None
        if first is None:
            return names
        if first.op in _FORCING_COMPARISONS:
            return names | self.strict(node.expr) | self.strict(first.expr)
        if first.op in ("in", "notin"):
            return names | self.strict(first.expr)
        return names | self.evaluated(first.expr)


def required_variables(source: str) -> frozenset[str]:
    """The top-level variables every render of ``source`` needs from its data.

    Conservative: a name counts only where the render certainly evaluates it and
    certainly fails without it: outside ``if`` branches, loop and macro bodies and the
    right side of ``and``/``or``; not under ``is defined``/``is undefined`` (or any
    other test), nor through ``default``; nor a name the template sets anywhere (a
    ``{% set %}`` once, at the top, to a bare variable stands for that variable). A
    nested key (``order.id``) counts as its top-level name only. A template that does
    not parse, or that needs another template (``extends``, ``include``, ``import``),
    needs nothing here: its render fails whatever the data.
    """
    try:
        template = _ENVIRONMENTS[False].parse(source)
    except TemplateSyntaxError:
        return frozenset()
    if any(True for _ in template.find_all(_LOADS)):
        return frozenset()
    requirements = _Requirements(template)
    requirements.statements(template.body)
    return frozenset(requirements.required)
