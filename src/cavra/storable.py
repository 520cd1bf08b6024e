"""Text the evidence store can keep, checked once where input enters and repaired where a record must be kept.

Two characters are valid in a JSON string but cannot be stored everywhere:

* NUL (U+0000): PostgreSQL text columns refuse it ("PostgreSQL text fields cannot contain NUL (0x00)
  bytes"), and it ends C strings in the tools that read the evidence afterwards;
* a lone surrogate (U+D800 to U+DFFF not in a pair, e.g. ``"\\ud800"`` in JSON): it is not a Unicode
  scalar value, so it cannot be encoded as UTF-8 (every backend, the JSON file, every answer).

:func:`find_unstorable` walks a JSON value (object keys too) and names the first such character by its
path; :func:`check_storable` raises :class:`~cavra.errors.InputError` with that path. Every face refuses
such input at the door with it (the event validator :func:`cavra.events.normalize_event`, the record
validator :func:`cavra.governance.records.validate_record`, and the API's request parsing in
:mod:`cavra.api.checked`). :func:`storable_copy` is the repair for the one place that must keep what it
has (a delivery record the store refused, see :mod:`cavra.delivery.worker`): the characters become U+FFFD
and long texts are cut.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from cavra.errors import InputError

_BAD = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"
#: how deep a value may nest (deeper is refused: Python's JSON encoder gives up near 1000 levels, and nothing
#: CAVRA takes nests anywhere near this deep)
MAX_DEPTH = 200


def problem_of(text: str) -> str | None:
    """Why ``text`` cannot be stored, or ``None``."""
    found = _BAD.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "contains a NUL character (U+0000), which the store cannot keep"
    return f"contains a lone surrogate (U+{ord(found.group()):04X}), which is not valid Unicode text"


def _show(key: str) -> str:
    """A key as it appears in a path: non-printable characters escaped, so no path echoes a control
    character."""
    return "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in key)


def join_path(path: tuple[str | int, ...]) -> str:
    """``("event", "labels", 2, "x")`` → ``event.labels[2].x``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{_show(part)}" if out else _show(part))
    return out


def find_unstorable(
    value: object, path: tuple[str | int, ...] = ()
) -> tuple[tuple[str | int, ...], str] | None:
    """``(path, problem)`` of the first text in ``value`` (keys included) the store cannot keep."""
    stack: list[tuple[object, tuple[str | int, ...]]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            problem = problem_of(item)
            if problem is not None:
                return where, problem
        elif isinstance(item, Mapping):
            if len(where) - len(path) >= MAX_DEPTH:
                return where, f"nests deeper than {MAX_DEPTH} levels"
            children: list[tuple[object, tuple[str | int, ...]]] = []
            for key, child in item.items():
                name = str(key)
                problem = problem_of(name)
                if problem is not None:
                    return where, f"has a key that {problem}"
                children.append((child, (*where, name)))
            stack.extend(reversed(children))
        elif isinstance(item, (list, tuple)):
            if len(where) - len(path) >= MAX_DEPTH:
                return where, f"nests deeper than {MAX_DEPTH} levels"
            stack.extend(reversed([(child, (*where, i)) for i, child in enumerate(item)]))
    return None


def check_storable(value: object, source: str, *, prefix: tuple[str | int, ...] = ()) -> None:
    """Raise InputError ``SOURCE: field PATH: problem`` when ``value`` holds text the store cannot keep."""
    found = find_unstorable(value, prefix)
    if found is None:
        return
    where, problem = found
    field = join_path(where)
    raise InputError(f"{source}: field {field}: {problem}" if field else f"{source}: {problem}")


def clean_text(text: str, limit: int | None = None) -> str:
    """``text`` with NUL and lone surrogates replaced by U+FFFD, cut to ``limit`` characters."""
    cleaned = _BAD.sub(REPLACEMENT, text)
    if limit is not None and len(cleaned) > limit:
        cleaned = cleaned[: max(0, limit - 1)] + "…"
    return cleaned


def storable_copy(value: Any, *, text_limit: int | None = None, list_limit: int | None = None) -> Any:
    """A JSON-native copy of ``value`` every store can keep: texts (and keys) cleaned and cut to
    ``text_limit``, lists cut to their first ``list_limit`` items, nothing deeper than :data:`MAX_DEPTH`."""

    def copy(item: Any, depth: int) -> Any:
        if isinstance(item, str):
            return clean_text(item, text_limit)
        if item is None or isinstance(item, (bool, int, float)):
            return item
        if depth >= MAX_DEPTH:
            return None
        if isinstance(item, Mapping):
            return {clean_text(str(k), text_limit): copy(v, depth + 1) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            items = list(item) if list_limit is None else list(item)[:list_limit]
            return [copy(v, depth + 1) for v in items]
        return clean_text(str(item), text_limit)

    return copy(value, 0)
