"""The Splunk HEC emulator's reading of a request body: a stream of concatenated JSON envelopes (the event
endpoints) or raw lines (``/raw``), checked as HEC checks them (see :mod:`cavra.emulators.splunk`)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BodyError:
    """The first bad envelope of a request: its HEC code and zero-based position."""

    code: int
    index: int

    @property
    def text(self) -> str:
        return _TEXTS[self.code]


_TEXTS = {
    5: "No data",
    6: "Invalid data format",
    7: "Incorrect index",
    12: "Event field is required",
    13: "Event field cannot be blank",
    15: "Error in handling indexed fields",
}


def _valid_time(value: Any) -> bool:
    if isinstance(value, str):
        return bool(re.fullmatch(r"\s*[0-9]+(\.[0-9]*)?\s*", value))
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_envelope(env: Any, index: int, allowed: list[str] | None) -> BodyError | None:
    if not isinstance(env, dict):
        return BodyError(6, index)
    if "event" not in env:
        return None if "fields" in env else BodyError(12, index)
    event = env["event"]
    if event is None or event is False:
        return BodyError(6, index)
    if isinstance(event, str) and not event.strip():
        return BodyError(13, index)
    if "time" in env and not _valid_time(env["time"]):
        return BodyError(6, index)
    for key in ("host", "source", "sourcetype"):
        if key in env and not isinstance(env[key], str):
            return BodyError(6, index)
    fields = env.get("fields", {})
    if not isinstance(fields, dict) or any(
        isinstance(v, dict) or (isinstance(v, list) and any(isinstance(x, dict | list) for x in v))
        for v in fields.values()
    ):
        return BodyError(15, index)
    if "index" in env:
        idx = env["index"]
        if not isinstance(idx, str) or (allowed is not None and idx not in allowed):
            return BodyError(7, index)
    return None


def parse_event_stream(
    body: bytes, allowed: list[str] | None, unparsable: frozenset[str] = frozenset()
) -> tuple[list[dict[str, Any]], BodyError | None]:
    """Parse concatenated JSON envelopes: the good ones before the first bad one, and that error."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return [], BodyError(6, 0)
    if not text.strip():
        return [], BodyError(5, 0)
    decoder = json.JSONDecoder()
    good: list[dict[str, Any]] = []
    pos, index = 0, 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos >= len(text):
            return good, None
        try:
            env, pos = decoder.raw_decode(text, pos)
        except ValueError:
            return good, BodyError(6, index)
        problem = _check_envelope(env, index, allowed)
        if problem is None and unparsable and _event_id(env) in unparsable:
            problem = BodyError(6, index)
        if problem is not None:
            return good, problem
        if "event" in env:  # an envelope with only fields is a metric: accepted, not indexed as an event
            good.append(env)
        index += 1


def _event_id(env: Any) -> str | None:
    event = env.get("event") if isinstance(env, dict) else None
    return str(event.get("event_id")) if isinstance(event, dict) else None


def parse_raw(
    body: bytes, query: dict[str, str], allowed: list[str] | None
) -> tuple[list[dict[str, Any]], BodyError | None]:
    """``/raw``: one event per non-empty line, metadata from the query string."""
    text = body.decode("utf-8", errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return [], BodyError(5, 0)
    if "index" in query and allowed is not None and query["index"] not in allowed:
        return [], BodyError(7, 0)
    return [{**query, "event": line} for line in lines], None
