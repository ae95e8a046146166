"""The Jinja2 environment for templates in configs: a sandbox bounded in time and memory.

Jinja2's sandbox keeps a template away from Python's internals, but not from asking for
`'x' * 10**9`, `'x'|center(10**9)` or two nested loops over `range(100000)`, and a config may
come from anyone. So this environment computes nothing while compiling, checks every string or
list an operator, filter, method or literal would make against MAX_RENDERED_CHARS before making
it, and counts the steps and written text of each rendered value. Compile with TEMPLATES and
render with `render()`; a template over a bound raises TemplateLimitError.
"""

from __future__ import annotations

import re
import types
from collections import abc
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from functools import wraps
from itertools import chain
from typing import Any, ClassVar

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, nodes, pass_context
from jinja2.runtime import Context, LoopContext, Macro, Namespace, markup_join, str_join
from jinja2.sandbox import SandboxedEnvironment, SandboxedFormatter
from jinja2.visitor import NodeTransformer
from markupsafe import EscapeFormatter, Markup

from synthaix.columns.base import MAX_RENDERED_CHARS

#: Work units for one value: one per loop iteration, call, filter, operator and attribute,
#: plus one per 1,000 characters they produce. A real template needs tens; a million take
#: from a fraction of a second to about two, depending on what each step does.
MAX_STEPS = 1_000_000
#: Characters a template may write for one value, counting text written into `{% set %}`
#: blocks, macros and filter blocks that it may then discard.
MAX_WRITTEN_CHARS = 10 * MAX_RENDERED_CHARS
#: A macro call costs Jinja2 some 40 times a loop step (a new frame, arguments, its output).
_MACRO_STEPS = 20


class TemplateLimitError(Exception):
    """A template asked for more time or memory than one value may use."""

    hint = (
        f"a template value may be at most {MAX_RENDERED_CHARS:,} characters and take at most "
        f"{MAX_STEPS:,} steps; loop over fewer items and build smaller text"
    )


class _Budget:
    """The work done so far for one rendered value."""

    __slots__ = ("steps", "written")

    def __init__(self) -> None:
        self.steps = self.written = 0

    def charge(self, steps: int) -> None:
        self.steps += steps
        if self.steps > MAX_STEPS:
            raise TemplateLimitError(
                f"template takes more than {MAX_STEPS:,} steps (loop iterations, calls, "
                "filters) to render one value"
            )


# Set by render() for the value being rendered; outside it only the size checks apply.
_BUDGET: ContextVar[_Budget | None] = ContextVar("synthaix_template_budget", default=None)


def _charge(steps: int) -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.charge(steps)


def _limit(size: int, what: str) -> None:
    if size > MAX_RENDERED_CHARS:
        raise TemplateLimitError(
            f"{what} would make a value of {size:,} characters or items; a template value may "
            f"be at most {MAX_RENDERED_CHARS:,}"
        )


_TEXT = (str, bytes)
_SEQUENCES = (str, bytes, list, tuple)
# What str() prints item by item (concrete types: ABC checks cost a µs on every value).
_VIEWS = tuple(type(view) for view in ({}.keys(), {}.values(), {}.items()))
_CONTAINERS = (list, tuple, set, frozenset, dict, Namespace, *_VIEWS)
_SCALARS = frozenset({int, float, bool, type(None)})
_END = object()


def _is_iterator(value: Any) -> bool:
    # A loop's `loop` is an iterator too, but it must stay untouched.
    kind = type(value)
    return hasattr(kind, "__next__") and hasattr(kind, "__iter__") and kind is not LoopContext


def _items(container: Any) -> Iterator[Any]:
    if isinstance(container, Namespace):
        container = container._Namespace__attrs  # what its repr prints
    if isinstance(container, dict):
        return chain.from_iterable(container.items())
    return iter(container)


def _size(value: Any, indent: int = 0) -> int:
    """Characters and items `value` prints as, counted until just past MAX_RENDERED_CHARS.

    A list repeated by reference is small in memory but prints in full each time, so shared
    items count each time they appear. `indent` adds that many characters per nesting level
    of each item, as indented JSON and pretty-printing write them.
    """
    if isinstance(value, _TEXT):
        return len(value)
    if type(value) in _SCALARS or not isinstance(value, _CONTAINERS):
        return 0
    total = visits = 0
    stack = [_items(value)]
    while stack and total <= MAX_RENDERED_CHARS:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
            continue
        visits += 1
        total += 1 + indent * len(stack)
        if isinstance(item, _TEXT):
            total += len(item)
        elif isinstance(item, _CONTAINERS):
            stack.append(_items(item))
    _charge(visits)
    return total


def _text_size(value: Any) -> int:
    """Length of str(value), computed without making a large string."""
    if isinstance(value, (*_TEXT, *_CONTAINERS)):
        return _size(value)
    return len(str(value))


def _produced(value: Any, what: str) -> Any:
    """`value`, once it is known to be within bounds; producing it costs work by its size."""
    if isinstance(value, _TEXT):
        size = len(value)
    elif type(value) in _SCALARS:
        size = 0
    elif _is_iterator(value):  # a lazy filter's result is checked as it is read
        return value
    else:
        size = _size(value)
    _charge(1 + size // 1_000)
    _limit(size, what)
    return value


def _read(values: Any, what: str) -> Any:
    """An iterator as a list, read only while it stays within bounds; other values checked."""
    if type(values) in _SCALARS:
        return values
    if not _is_iterator(values):
        size = _size(values)
        _charge(size // 1_000)  # reading it costs time too (comparing, counting, copying)
        _limit(size, what)
        return values
    items = []
    size = 0
    for item in values:
        size += 1 + _size(item)
        _limit(size, what)
        items.append(item)
    _charge(len(items))
    return items


# A %-conversion: %[(key)][flags][width][.precision]type; `%%` is a literal percent sign.
_PERCENT_SPEC = re.compile(r"%(?:%|(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?)")


def _digits(digits: str) -> int:
    return int(digits) if len(digits) < 10 else 10**10  # int() refuses thousands of digits


def _number(value: Any) -> int:
    """A width, count or precision (non-integers are the callee's own business)."""
    return abs(value) if isinstance(value, int) else 0


def _pad(width: Any) -> int:
    """Characters an indent of `width` spaces, or of the string `width`, adds."""
    if isinstance(width, str):
        return len(width)
    return max(width, 0) if isinstance(width, int) else 0


def _percent_width(template: str, args: Any) -> int:
    """The largest width or precision in `template % args`; a `*` takes one from args."""
    values = args if isinstance(args, tuple) else (args,)
    # A negative `*` width pads as much as a positive one (it left-justifies).
    star = max((abs(v) for v in values if isinstance(v, int)), default=0)
    widths = [0]
    for match in _PERCENT_SPEC.finditer(template):
        widths.extend(star if part == "*" else _digits(part) for part in match.groups() if part)
    return max(widths)


def _replace_size(text: str | bytes, old: Any, new: Any, count: Any) -> int:
    hits = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * (len(new) - len(old))


def _join_size(items: Any, separator: int) -> int:
    sizes = [_text_size(item) for item in items]
    return sum(sizes) + separator * max(len(sizes) - 1, 0)


def _wordwrap_size(text: str, width: Any, wrapstring: Any) -> int:
    if not isinstance(width, int) or width <= 0:
        return 0
    # Each line but the last of a paragraph is followed by one at least as long as the rest
    # of its width, so a paragraph of n characters has at most 2n/width + 1 lines.
    lines = 2 * len(text) // width + text.count("\n") + 1
    return len(text) + lines * (len(wrapstring) if isinstance(wrapstring, str) else 1)


def _urlize_size(text: str, target: Any, rel: Any) -> int:
    links = sum(1 for word in text.split() if "." in word or "@" in word or ":" in word)
    return 3 * len(text) + links * (100 + len(str(target or "")) + len(str(rel or "")))


def _sum_size(iterable: Any, start: Any) -> int:
    if isinstance(start, list | tuple) and isinstance(iterable, abc.Sized):
        # Adding sequences copies the total so far each time: quadratic work. The sum itself
        # is checked once made.
        _charge(len(iterable) * _size(iterable) // 2)
    return 0


# The size of a filter's result, from the arguments it is called with (after the context or
# environment Jinja2 passes some), for filters that would make a large value before their
# result can be checked. Extra arguments are left for the filter to refuse.
_FILTER_SIZES: dict[str, Callable[..., int]] = {
    "center": lambda value, width=80, *_, **__: _number(width),
    "indent": lambda s, width=4, *_, **__: len(str(s)) + (str(s).count("\n") + 1) * _pad(width),
    "wordwrap": lambda s, width=79, break_long_words=True, wrapstring=None, *_, **__: (
        _wordwrap_size(str(s), width, wrapstring)
    ),
    "format": lambda value, *args, **kwargs: _percent_width(str(value), kwargs or args),
    "join": lambda value, d="", *_, **__: _join_size(value, len(str(d))),
    "replace": lambda s, old="", new="", count=None, *_, **__: _replace_size(
        str(s), str(old), str(new), count
    ),
    "tojson": lambda value, indent=None, *_, **__: _size(value, indent=_pad(indent)),
    "pprint": lambda value, *_, **__: _size(value, indent=1),
    # Only with fill_with is the last batch padded to linecount items.
    "batch": lambda value, linecount=1, fill_with=None, *_, **__: (
        0 if fill_with is None else _number(linecount)
    ),
    "slice": lambda value, slices=1, *_, **__: _number(slices),
    # round(5, -10**9) computes 10**(10**9).
    "round": lambda value, precision=0, *_, **__: _number(precision),
    "sum": lambda iterable, attribute=None, start=0, *_, **__: _sum_size(iterable, start),
    "urlize": lambda value, trim_url_limit=None, nofollow=False, target=None, rel=None, *_, **__: (
        _urlize_size(str(value), target, rel)
    ),
}
# Other filters, `truncate` among them, make little more than their inputs, which are checked;
# the result of every filter is checked too.


def _method_size(text: str | bytes, name: str, args: tuple[Any, ...], kwargs: Any) -> int:
    """The size of the result of str (or bytes) methods whose result grows with an argument."""
    first = args[0] if args else None
    kind = str if isinstance(text, str) else bytes
    if name in ("center", "ljust", "rjust", "zfill"):
        return _number(first)
    if name == "expandtabs":
        tabsize = first if args else kwargs.get("tabsize", 8)
        return len(text) + text.count("\t" if kind is str else b"\t") * _pad(tabsize)
    if name == "replace" and len(args) >= 2 and all(isinstance(a, kind) for a in args[:2]):
        count = args[2] if len(args) > 2 else kwargs.get("count", -1)
        return _replace_size(text, args[0], args[1], count)
    if name == "join" and args:
        return _join_size(args[0], len(text))
    if name == "translate" and isinstance(first, Mapping):
        longest = max((len(v) for v in first.values() if isinstance(v, str)), default=1)
        return len(text) * max(longest, 1)
    return 0


# Context filters, because Jinja2 calls a filter directly (no sandbox call in between) and
# never folds a context filter at compile time. The names cannot be written in a template.

_LOOP = "synthaix:loop"
_CONCAT = "synthaix:concat"
_WRITE = "synthaix:write"
_VALUE = "synthaix:value"


@pass_context
def _count_loop(context: Context, iterable: Any) -> Iterator[Any]:
    budget = _BUDGET.get()
    for item in iterable:
        if budget is not None:
            budget.charge(1)
        yield item


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if type(value) not in _SCALARS:
        _limit(_text_size(value), "printing a value")
    return str(value)


@pass_context
def _concat(context: Context, *values: Any) -> str:
    parts = [_text(value) for value in values]
    total = sum(map(len, parts))
    _charge(1 + total // 1_000)
    _limit(total, "joining with ~")
    return (markup_join if context.eval_ctx.autoescape else str_join)(parts)


@pass_context
def _write(context: Context, value: Any) -> str:
    text = "" if value is None else _text(value)
    budget = _BUDGET.get()
    if budget is not None:
        budget.charge(1 + len(text) // 1_000)
        budget.written += len(text)
        if budget.written > MAX_WRITTEN_CHARS:
            raise TemplateLimitError(
                f"template writes more than {MAX_WRITTEN_CHARS:,} characters for one value "
                "(counting text inside blocks and macros)"
            )
    return text


@pass_context
def _value(context: Context, value: Any) -> Any:
    if not _is_iterator(value):  # left lazy, as the comparison or literal would see it
        _read(value, "a list, tuple or dict")
    return value


def _filter(name: str, node: nodes.Expr, *args: nodes.Expr) -> nodes.Filter:
    return nodes.Filter(node, name, list(args), [], None, None, lineno=node.lineno)


# Jinja2's random draws (the `random` filter, `lipsum()`) use Python's unseeded `random`: a
# build with them could not be made again from its config and seed.


class RefusedTemplate(TemplateSyntaxError):
    """Valid Jinja2 that a template may not use (draws no seed repeats)."""


_BY_NAME = frozenset({"map", "select", "reject"})  # filters that apply a filter or test by name


def _unseeded(what: str) -> str:
    return (
        f"{what} draws values no seed repeats (a build must be reproducible); draw them with "
        "a column (category, integer, text.lorem...) and read it in the template"
    )


class _Guard(NodeTransformer):
    """Rewrites a parsed template so that loops count their iterations, `~`, literals and
    comparisons check the size of their values, and output is counted.

    Jinja2 folds constant expressions while compiling, which made `validate` compute
    `'x' * 10**9`: `optimized=False` turns its optimizer off, and the context filters around
    output and `{% autoescape %}` options stop the folding of those.
    """

    def visit_For(self, node: nodes.For) -> nodes.For:
        self.generic_visit(node)
        node.iter = _filter(_LOOP, node.iter)
        return node

    def visit_Filter(self, node: nodes.Filter) -> nodes.Node:
        named = [a.value for a in node.args if isinstance(a, nodes.Const)]  # map('random')
        if node.name == "random" or (node.name in _BY_NAME and "random" in named):
            raise RefusedTemplate(_unseeded("the random filter"), node.lineno)
        return self.generic_visit(node)

    def visit_Call(self, node: nodes.Call) -> nodes.Node:
        if isinstance(node.node, nodes.Name) and node.node.name == "lipsum":
            raise RefusedTemplate(_unseeded("lipsum()"), node.lineno)
        return self.generic_visit(node)

    def visit_Getattr(self, node: nodes.Getattr) -> nodes.Node:
        # The sandbox refuses these on every row at run time: said once, when validated. (A
        # column named `_x` is still read as `customers._x`: one underscore is a name.)
        if node.attr.startswith("__"):
            raise RefusedTemplate(_private(node.attr), node.lineno)
        return self.generic_visit(node)

    def visit_Concat(self, node: nodes.Concat) -> nodes.Filter:
        self.generic_visit(node)
        return _filter(_CONCAT, *node.nodes)

    def visit_Output(self, node: nodes.Output) -> nodes.Output:
        self.generic_visit(node)
        node.nodes = [_filter(_WRITE, child) for child in node.nodes]
        return node

    def visit_EvalContextModifier(self, node: nodes.EvalContextModifier) -> nodes.Node:
        self.generic_visit(node)
        for option in node.options:
            option.value = _filter(_VALUE, option.value)
        return node

    visit_ScopedEvalContextModifier = visit_EvalContextModifier

    def visit_Compare(self, node: nodes.Compare) -> nodes.Compare:
        # Comparing costs time by the size of what is compared.
        self.generic_visit(node)
        node.expr = _filter(_VALUE, node.expr)
        for operand in node.ops:
            operand.expr = _filter(_VALUE, operand.expr)
        return node

    def visit_List(self, node: nodes.List) -> nodes.Filter:
        # Literals nest by reference: `[a, a]`, ten levels deep, prints `a` 1,024 times.
        self.generic_visit(node)
        return _filter(_VALUE, node)

    visit_Dict = visit_List

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Expr:
        self.generic_visit(node)
        return node if node.ctx != "load" else _filter(_VALUE, node)  # not `a, b` targets


def _private(name: str) -> str:
    return (
        f"'{name}' is not readable: the template sandbox keeps Python's internals private; "
        "read a column's value, or its public attributes (signup_date.year)"
    )


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` with its inputs read and checked, its result's size checked before it runs
    (where _FILTER_SIZES knows it) and its result checked after."""
    size_of = _FILTER_SIZES.get(name)
    skip = 0 if getattr(func, "jinja_pass_arg", None) is None else 1  # context/environment
    what = f"the {name} filter"

    @wraps(func)  # keeps the pass_context/pass_environment marks
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _charge(1)
        args = (*args[:skip], *(_read(arg, what) for arg in args[skip:]))
        kwargs = {key: _read(value, what) for key, value in kwargs.items()}
        if size_of is not None:
            _limit(size_of(*args[skip:], **kwargs), name)
        return _produced(func(*args, **kwargs), what)

    return guarded


class _BoundedFormatter(SandboxedFormatter):
    def format_field(self, value: Any, format_spec: str) -> Any:
        # Every number in a spec such as `>10` or `.3f` is a width or precision (a fill is
        # one character).
        for digits in re.findall(r"\d+", format_spec):
            _limit(_digits(digits), "a width or precision in str.format")
        _limit(_text_size(value), "str.format")
        return super().format_field(value, format_spec)


class _BoundedEscapeFormatter(_BoundedFormatter, EscapeFormatter):
    pass


class BoundedEnvironment(SandboxedEnvironment):
    """SandboxedEnvironment whose templates are rewritten and checked as described above."""

    intercepted_binops: ClassVar[frozenset[str]] = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(optimized=False, **options)
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}
        self.tests = {name: _guard_filter(name, test) for name, test in self.tests.items()}
        self.filters.update({_LOOP: _count_loop, _CONCAT: _concat, _WRITE: _write, _VALUE: _value})
        self.filters.pop("random", None)
        self.globals.pop("lipsum", None)

    def compile(  # type: ignore[override]
        self,
        source: str | nodes.Template,
        name: str | None = None,
        filename: str | None = None,
        raw: bool = False,
        defer_init: bool = False,
    ) -> Any:
        """Compile `source`; a parsed template is rewritten in place."""
        tree = self.parse(source, name, filename) if isinstance(source, str) else source
        return super().compile(_Guard().visit(tree), name, filename, raw, defer_init)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _charge(1)
        ints = isinstance(left, int) and isinstance(right, int)
        bits = 0
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if isinstance(sequence, _SEQUENCES) and isinstance(times, int):
                    _limit(_size(sequence) * times, "repeating with *")
            if ints:
                bits = left.bit_length() + right.bit_length()
        elif operator == "**" and ints and right > 0 and abs(left) > 1:
            bits = left.bit_length() * right
        elif operator == "+" and isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
            _limit(_size(left) + _size(right), "joining with +")
        elif operator == "%" and isinstance(left, str):
            _limit(_size(right), "formatting with %")
            _limit(_percent_width(left, right), "a width or precision in % formatting")
        # An integer of n bits prints as at least 3n/10 digits (log2(10) < 10/3).
        _limit(bits * 3 // 10, f"the {operator} operator")
        result = super().call_binop(context, operator, left, right)
        return _produced(result, f"the {operator} operator")

    def getattr(self, obj: Any, attribute: str) -> Any:
        _charge(1)
        if type(obj) is dict and attribute in obj:
            # A row's field (`customers.items`, `o.values`) wins over the dict method of that
            # name, as it does on the vectorised path.
            return obj[attribute]
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _charge(1)
        return _produced(super().getitem(obj, argument), "indexing")  # a slice is a copy

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _charge(_MACRO_STEPS if isinstance(obj, Macro) else 1)
        if isinstance(obj, LoopContext) and args:  # `loop(children)` in a recursive loop
            args = (_count_loop(context, args[0]), *args[1:])
            return super().call(context, obj, *args, **kwargs)
        args = tuple(_read(arg, "a call argument") for arg in args)
        for key, value in kwargs.items():
            if key not in ("_loop_vars", "_block_vars"):  # Jinja2's own, not the template's
                kwargs[key] = _read(value, "a call argument")
        owner = getattr(obj, "__self__", None)
        name = getattr(obj, "__name__", "")
        if isinstance(owner, _TEXT):
            _limit(_method_size(owner, name, args, kwargs), name)
        result = super().call(context, obj, *args, **kwargs)
        what = f"calling {name or 'a function'}"
        if isinstance(owner, _CONTAINERS):  # append, extend, update... grow the list itself
            _read(owner, what)
        return _produced(result, what)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """Jinja2's sandboxed str.format and str.format_map, with widths checked."""
        if (
            not isinstance(value, types.MethodType | types.BuiltinMethodType)
            or value.__name__ not in ("format", "format_map")
            or not isinstance(value.__self__, str)
        ):
            return None
        template: str = value.__self__
        formatter: SandboxedFormatter
        if isinstance(template, Markup):
            formatter = _BoundedEscapeFormatter(self, escape=template.escape)
        else:
            formatter = _BoundedFormatter(self)
        is_map = value.__name__ == "format_map"

        @wraps(value)
        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one positional argument")
                args, kwargs = (), args[0]
            return type(template)(formatter.vformat(template, args, kwargs))

        return wrapper


def render(template: Template, context: Mapping[str, Any] | None = None) -> str:
    """The text of `template` for `context`, stopped with TemplateLimitError as soon as it
    passes a bound."""
    token = _BUDGET.set(_Budget())
    pieces = template.generate(context or {})
    try:
        out: list[str] = []
        size = 0
        for piece in pieces:
            size += len(piece)
            if size > MAX_RENDERED_CHARS:
                raise TemplateLimitError(
                    f"template output exceeds {MAX_RENDERED_CHARS:,} characters (a value may "
                    f"be at most {MAX_RENDERED_CHARS:,})"
                )
            out.append(piece)
        return "".join(out)
    finally:
        pieces.close()
        _BUDGET.reset(token)


#: The environment every config template is compiled in. Nulls render as empty text.
TEMPLATES = BoundedEnvironment(undefined=StrictUndefined, autoescape=False)


def template_hint(exc: Exception) -> str:
    """What to check when a template failed on a row's data."""
    from jinja2.exceptions import UndefinedError

    if isinstance(exc, UndefinedError):
        return "it reads a name or field the row does not have: check the spelling"
    return "nulls render as empty text; check the comparisons and filters"
