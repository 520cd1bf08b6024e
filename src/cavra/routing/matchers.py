"""What a route tests an event with: globs, severity, and Alertmanager-style field matchers.

An event's *fields* are read by a dotted path (``release``, ``gates.0.name`` is not supported: lists are
not walked). ``labels.NAME`` reads the event's ``labels`` map as one flat key, so label names may hold dots
(``labels.app.kubernetes.io/name``). A field that is missing (or ``null``) reads as the empty string, as in
Alertmanager, so ``env!="prod"`` matches an event without ``env`` and ``env=""`` matches only such events.
Other values read as text: ``true``/``false``, numbers as JSON writes them, lists and maps as canonical
JSON.

Matchers (``NAME=VALUE``, ``NAME!=VALUE``, ``NAME=~REGEX``, ``NAME!~REGEX``; the value optionally in double
quotes, with JSON escapes) follow Alertmanager's: regexes are fully anchored (``=~"prod"`` matches ``prod``
only, not ``preprod``). Globs (``event_type``, ``subject``) use shell wildcards ``*``, ``?`` and ``[...]``,
case-sensitive, and match the whole text.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cavra.events import SEVERITIES, canonical_json

OPS = ("=", "!=", "=~", "!~")
_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.\-/]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$", re.DOTALL)
_GLOB_CHARS = re.compile(r"[*?\[]")


class MatcherError(ValueError):
    """A matcher, glob or regex that cannot be compiled; the message says why (no key path)."""


def field_text(value: object) -> str:
    """How a field's value reads for matching (see the module docstring)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return canonical_json(value).decode()


def split_path(name: str) -> tuple[str, ...]:
    """``labels.a.b`` → ``("labels", "a.b")``; ``x.y`` → ``("x", "y")``."""
    if name.startswith("labels."):
        return ("labels", name[len("labels.") :])
    return tuple(name.split("."))


def read_field(event: Mapping[str, Any], path: tuple[str, ...]) -> str:
    """The text of the field at ``path`` (``""`` when missing)."""
    value: object = event
    for part in path:
        if not isinstance(value, Mapping):
            return ""
        value = value.get(part)
    return field_text(value)


@dataclass(frozen=True)
class Glob:
    """A shell-style pattern that matches the whole text; exact when it has no wildcard."""

    pattern: str
    regex: re.Pattern[str] | None

    @classmethod
    def compile(cls, pattern: str) -> Glob:
        if not isinstance(pattern, str) or not pattern:
            raise MatcherError("must be a non-empty string")
        if _GLOB_CHARS.search(pattern) is None:
            return cls(pattern, None)
        return cls(pattern, re.compile(fnmatch.translate(pattern)))

    def test(self, text: str) -> bool:
        if self.regex is None:
            return text == self.pattern
        return self.regex.match(text) is not None


@dataclass(frozen=True)
class Matcher:
    """One ``NAME op VALUE`` test on an event field."""

    name: str
    path: tuple[str, ...]
    op: str
    value: str
    regex: re.Pattern[str] | None
    #: this matcher's place among the distinct matchers of its route table (set by the table): routing
    #: tests each distinct matcher at most once per event, however many routes repeat it
    slot: int = field(default=0, compare=False)

    @classmethod
    def parse(cls, text: object) -> Matcher:
        if not isinstance(text, str):
            raise MatcherError(f"must be a string like 'env=\"prod\"', got {type(text).__name__}")
        found = _MATCHER.match(text)
        if found is None:
            raise MatcherError(
                f"{text!r} is not a matcher: write NAME=VALUE, NAME!=VALUE, NAME=~REGEX or NAME!~REGEX"
            )
        name, op, raw = found.groups()
        if name.endswith(".") or ".." in name or name == "labels.":
            raise MatcherError(f"{name!r} is not a field name")
        value = _unquote(raw)
        return cls.build(name, op, value)

    @classmethod
    def build(cls, name: str, op: str, value: str) -> Matcher:
        regex = None
        if op in ("=~", "!~"):
            try:
                regex = re.compile(f"(?:{value})\\Z")
            except re.error as exc:
                raise MatcherError(f"invalid regex {value!r}: {exc}") from None
        return cls(name, split_path(name), op, value, regex)

    def __post_init__(self) -> None:
        # the test, chosen once: routing calls it for every candidate route of every event
        value, regex = self.value, self.regex
        if self.op == "=":
            fast: Callable[[str], bool] = value.__eq__
        elif self.op == "!=":
            fast = value.__ne__
        else:
            assert regex is not None
            match = regex.match
            fast = (lambda t: match(t) is not None) if self.op == "=~" else (lambda t: match(t) is None)
        object.__setattr__(self, "test", fast)

    def test(self, text: str) -> bool:  # replaced per instance by __post_init__
        raise NotImplementedError

    def __str__(self) -> str:
        return f"{self.name}{self.op}{json.dumps(self.value, ensure_ascii=False)}"


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            raise MatcherError(f"bad quoted value {raw}") from None
        if not isinstance(value, str):  # pragma: no cover - a JSON string literal always decodes to str
            raise MatcherError(f"bad quoted value {raw}")
        return value
    if raw.startswith('"') or raw.endswith('"'):
        raise MatcherError(f"unbalanced quotes in {raw!r}")
    return raw


def severity_of(event: Mapping[str, Any]) -> int:
    """The rank of the event's severity (``max_severity``, else ``severity``; ``info`` when absent)."""
    for key in ("max_severity", "severity"):
        value = event.get(key)
        if isinstance(value, str):
            rank = _RANK.get(value.lower())
            if rank is not None:
                return rank
    return 0


_RANK = {name: i for i, name in enumerate(SEVERITIES)}

#: event types whose subject is an execution or export id, and that subject's kind
_SUBJECT_BY_TYPE = {
    "cavra.release.promotion_audit": ("promotion_execution", "execution_id"),
    "cavra.release.rollback_execution": ("rollback_execution", "execution_id"),
    "cavra.endpoint_management.publication": ("endpoint_export", "export_id"),
}


def subject_of(event: Mapping[str, Any]) -> tuple[str, str]:
    """The event's subject ``(kind, id)``: its ``subject`` object (``{"kind", "id"}``) when it has one;
    else the release record or export it is about; else its session (``("session", session_id)``); else
    ``("", "")``."""
    given = event.get("subject")
    if isinstance(given, Mapping):
        return field_text(given.get("kind")), field_text(given.get("id"))
    known = _SUBJECT_BY_TYPE.get(str(event.get("event_type") or ""))
    if known is not None and event.get(known[1]) is not None:
        return known[0], field_text(event.get(known[1]))
    session = event.get("session_id")
    if session is not None and session != "":
        return "session", field_text(session)
    return "", ""
