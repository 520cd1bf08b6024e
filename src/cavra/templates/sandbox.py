"""The sandbox every message template renders in: Jinja2's ``ImmutableSandboxedEnvironment``, bounded.

What a template may do is limited four ways, on top of the sandbox's own refusal of ``_``-prefixed
attributes, internals (``__class__``, ``__globals__``, function and frame attributes) and mutation of
lists and dicts:

* **Globals**: only ``range`` (at most :data:`MAX_RANGE` items), ``dict``, ``cycler`` and ``joiner``; no
  ``namespace`` (no state carried across loop iterations) and no ``lipsum``.
* **Steps and time**: every call, attribute or item access, operator, filter, test, concatenation and loop
  iteration is a step; a render takes at most :data:`MAX_STEPS` steps and :data:`TIME_LIMIT` seconds
  (checked every few hundred steps), else :class:`TemplateLimit`.
* **Size**: no value built while rendering may exceed :data:`MAX_VALUE` characters (strings, and lists or
  dicts by the size of what they hold), and an operation whose result could (``'a' * n``, a huge width in
  ``center``/``indent``/``format``, ``replace`` or ``join`` that multiply their input) is refused before it
  runs; the output stops at :data:`MAX_OUTPUT` characters.
* **Undefined**: a missing name or key renders as nothing (:class:`QuietUndefined`), so ``event.release``
  on an event without a release is empty, not an error.
"""

from __future__ import annotations

import contextvars
import functools
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import ChainableUndefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Cycler, Joiner

MAX_STEPS = 200_000
TIME_LIMIT = 1.0
MAX_VALUE = 100_000
MAX_OUTPUT = 100_000
MAX_RANGE = 10_000
#: upper bound on what an amplifying operation (replace, join, format, ...) could produce before it runs
_MAX_ESTIMATE = 20_000_000
_WIDE_FORMAT = re.compile(r"\d{6,}|\{[^{}]*\{|%[-#0 +]*\*")
_AMPLIFIERS = frozenset(
    {"center", "ljust", "rjust", "zfill", "expandtabs", "indent", "wordwrap", "truncate", "batch", "slice"}
)


#: filters whose result is at most a fixed multiple of their first argument (or one of their arguments):
#: they cannot amplify, so the estimate before they run is skipped (their result is still measured)
_LINEAR = frozenset(
    {
        *("slack_escape", "slack_clip", "clip", "oneline", "wiki_escape"),
        *("default", "d", "first", "last", "length", "count", "string", "list", "items", "attr"),
        *("upper", "lower", "title", "capitalize", "trim", "striptags", "escape", "e", "forceescape"),
        *("safe", "urlencode", "round", "int", "float", "abs", "reverse", "unique", "sort", "dictsort"),
        *("map", "select", "reject", "selectattr", "rejectattr", "groupby", "min", "max", "wordcount"),
    }
)


class TemplateLimit(SecurityError):
    """A render went past a limit (steps, time, size): the template is refused or falls back."""


class QuietUndefined(ChainableUndefined):
    """A missing name, attribute or key: renders as nothing and chains (``event.a.b`` on a missing ``a``)."""

    __slots__ = ()


@dataclass
class _Budget:
    steps: int = 0
    deadline: float = 0.0


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "cavra_template_budget", default=None
)


def step(count: int = 1) -> None:
    """Count ``count`` steps against the running render's budget."""
    budget = _BUDGET.get()
    if budget is None:
        return
    budget.steps += count
    if budget.steps > MAX_STEPS:
        raise TemplateLimit(f"the template took more than {MAX_STEPS} steps")
    if budget.steps % 256 < count and time.monotonic() > budget.deadline:
        raise TemplateLimit(f"the template took longer than {TIME_LIMIT:g} s")


def measure(value: Any, depth: int = 0) -> int:
    """How big ``value`` is, in characters (containers by what they hold, bounded work)."""
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, int):
        return len(str(value)) if value.bit_length() < 4096 else MAX_VALUE + 1
    if isinstance(value, (list, tuple, set, frozenset, dict)) and depth < 4:
        items: Iterable[Any] = value.items() if isinstance(value, dict) else value
        total = len(value)
        for item in items:
            # a string item is counted in place: most containers hold strings (facts, lists of names)
            total += len(item) if type(item) is str else measure(item, depth + 1)
            if total > MAX_VALUE * 4:
                break
        return total
    return 1


def _checked(value: Any, what: str) -> Any:
    if type(value) is str:  # the common case, without the walk
        if len(value) > MAX_VALUE:
            raise TemplateLimit(f"{what} would build a value over {MAX_VALUE} characters")
        return value
    if isinstance(value, (str, list, tuple, dict, int)) and measure(value) > MAX_VALUE:
        raise TemplateLimit(f"{what} would build a value over {MAX_VALUE} characters")
    return value


def _estimate(args: Iterable[Any]) -> int:
    total = 1
    for arg in args:
        total *= 1 + measure(arg)
        if total > _MAX_ESTIMATE:
            break
    return total


def _precheck(name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Refuse an operation that could build a huge value before it runs."""
    values = (*args, *kwargs.values())
    if name in _AMPLIFIERS or name == "range":
        for value in values:
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_VALUE:
                raise TemplateLimit(f"{name}: {value} is over the limit of {MAX_VALUE}")
    if name in ("format", "format_map") or name == "%":
        fmt = args[0] if args else ""
        if isinstance(fmt, str) and _WIDE_FORMAT.search(fmt):
            raise TemplateLimit(f"{name}: widths of 100000 or more and nested widths are not allowed")
    # one value alone cannot reach the estimate's bound (measure stops near 4 x MAX_VALUE): skip the walk
    if len(values) > 1 and name != "range" and _estimate(values) > _MAX_ESTIMATE:
        raise TemplateLimit(f"{name} could build a value over {MAX_VALUE} characters")


def bounded_range(*args: int) -> Iterator[int]:
    """``range`` for templates: at most :data:`MAX_RANGE` items, each one a step."""
    _precheck("range", args, {})
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise TemplateLimit(f"range of {len(rng)} items is over the limit of {MAX_RANGE}")
    return _counted(rng)


def _counted(iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        step()
        yield item


def loop_guard(iterable: Any) -> Any:
    """Every ``{% for %}`` iterates through this: each iteration is a step."""
    if isinstance(iterable, QuietUndefined):
        return iterable
    return _counted(iterable)


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    linear = name in _LINEAR

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        step()
        if not linear:
            plain = tuple(a for a in args if not hasattr(a, "environment") and not hasattr(a, "autoescape"))
            _precheck(name, plain, kwargs)
        return _checked(func(*args, **kwargs), f"filter {name}")

    return guarded


class _GuardedCodeGenerator(CodeGenerator):
    """String concatenation (``~``) goes through the environment, so its size is checked."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


#: the sandbox's answers on attributes, by the object's type and the name (see ``is_safe_attribute``)
_SAFE: dict[tuple[type, str], bool] = {}


class TemplateSandbox(ImmutableSandboxedEnvironment):
    """The bounded sandbox (see the module docstring). One instance is shared; budgets are per render."""

    code_generator_class = _GuardedCodeGenerator
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def __init__(self) -> None:
        super().__init__(
            undefined=QuietUndefined,
            autoescape=False,
            keep_trailing_newline=False,
            auto_reload=False,
            cache_size=0,
        )
        self.globals.clear()
        self.globals.update(range=bounded_range, dict=dict, cycler=Cycler, joiner=Joiner)
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}
        tests: dict[str, Any] = dict(self.tests)
        self.tests = {name: _guard_filter(name, f) for name, f in tests.items()}

    def add_filters(self, filters: Mapping[str, Callable[..., Any]]) -> None:
        for name, func in filters.items():
            self.filters[name] = _guard_filter(name, func)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Call(
                nodes.EnvironmentAttribute("loop_guard"), [loop.iter], [], None, None, lineno=loop.lineno
            )
        return tree

    loop_guard = staticmethod(loop_guard)

    def bounded_concat(self, parts: tuple[Any, ...]) -> str:
        step()
        total = 0
        out = []
        for part in parts:
            text = str(part)
            total += len(text)
            if total > MAX_VALUE:
                raise TemplateLimit(f"a concatenation would build a string over {MAX_VALUE} characters")
            out.append(text)
        return "".join(out)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        step()
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                sized = isinstance(seq, (str, list, tuple)) and isinstance(times, int)
                if sized and measure(seq) * max(times, 0) > MAX_VALUE:
                    raise TemplateLimit(f"'*' would build a value over {MAX_VALUE} characters")
        elif operator == "**":
            if isinstance(right, (int, float)) and isinstance(left, (int, float)):
                size = abs(left).bit_length() if isinstance(left, int) else 64
                if abs(right) > 1024 or size * abs(right) > 65_536:
                    raise TemplateLimit("'**' would build a number too large")
        elif operator == "%" and isinstance(left, str):
            _precheck("%", (left, right), {})
        return _checked(super().call_binop(context, operator, left, right), f"'{operator}'")

    def call_unop(self, context: Any, operator: str, arg: Any) -> Any:
        step()
        return super().call_unop(context, operator, arg)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        """Jinja's answer (no ``_`` name, no internal attribute of functions, methods, types, code, frames
        or generators, no method that changes a list, dict or set) is decided by ``isinstance`` on the
        object and the name: asked once per type and name."""
        key = (type(obj), attr)
        known = _SAFE.get(key)
        if known is None:
            known = super().is_safe_attribute(obj, attr, value)
            if len(_SAFE) < 4096:
                _SAFE[key] = known
        return known

    def getattr(self, obj: Any, attribute: str) -> Any:
        step()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        step()
        return super().getitem(obj, argument)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        step()
        name = getattr(__obj, "__name__", "")
        name = name if isinstance(name, str) else ""
        owner = getattr(__obj, "__self__", None)
        _precheck(name, (owner, *args) if isinstance(owner, str) else args, kwargs)
        return _checked(super().call(__context, __obj, *args, **kwargs), f"calling {name or 'a function'}")


def render_bounded(template: Any, context: Mapping[str, Any]) -> str:
    """Render ``template`` with ``context`` within the budget; the output stops at :data:`MAX_OUTPUT`."""
    token = _BUDGET.set(_Budget(deadline=time.monotonic() + TIME_LIMIT))
    try:
        out: list[str] = []
        size = 0
        for chunk in template.generate(context):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise TemplateLimit(f"the output is over {MAX_OUTPUT} characters")
            out.append(chunk)
            step()
        return "".join(out)
    finally:
        _BUDGET.reset(token)
