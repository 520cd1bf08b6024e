"""Property: a compiled route list routes every event exactly as a plain reference implementation does.

The reference below is written for obviousness, not speed: it re-reads the route specs as written (no
compilation, no candidate cache), walks the routes in order and applies Alertmanager's rules literally.
"""

from __future__ import annotations

import fnmatch
import json
import re
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cavra.errors import ConfigError
from cavra.events import SEVERITIES
from cavra.routing import compile_routes

DESTINATIONS = ["splunk", "slack", "slack-soc", "jira", "teams"]
TYPES = ["cavra.release.rollback_execution", "cavra.release.promotion_audit", "cavra.evidence_bundle", "x"]
GLOBS = ["cavra.*", "*", "cavra.release.*", "cavra.evidence_bundle", "?", "cavra.release.[pr]*"]
FIELDS = ["env", "labels.team", "labels.a.b", "release", "nested.key", "event_type"]
VALUES = ["", "a", "b", "prod", "staging", "1", "true"]
REGEXES = ["a", "a|b", ".*", "p.*", "[ab]+", "prod|staging", "", "1"]


# --- the reference -------------------------------------------------------------------------------------
def ref_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def ref_field(event: dict[str, Any], name: str) -> str:
    if name.startswith("labels."):
        labels = event.get("labels")
        return ref_text(labels.get(name[7:])) if isinstance(labels, dict) else ""
    value: Any = event
    for part in name.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return ref_text(value)


def ref_matcher(text: str, event: dict[str, Any]) -> bool:
    for op in ("=~", "!~", "!=", "="):  # longest operators first
        if op in text:
            name, value = text.split(op, 1)
            value = json.loads(value)
            actual = ref_field(event, name)
            if op == "=":
                return actual == value
            if op == "!=":
                return actual != value
            full = re.fullmatch(value, actual) is not None
            return full if op == "=~" else not full
    raise AssertionError(text)


def ref_severity(event: dict[str, Any]) -> int:
    for key in ("max_severity", "severity"):
        v = event.get(key)
        if isinstance(v, str) and v.lower() in SEVERITIES:
            return SEVERITIES.index(v.lower())
    return 0


def ref_matches(spec: dict[str, Any], event: dict[str, Any]) -> bool:
    et = event.get("event_type") if isinstance(event.get("event_type"), str) else ""
    if "event_type" in spec:
        globs = spec["event_type"] if isinstance(spec["event_type"], list) else [spec["event_type"]]
        if not any(fnmatch.fnmatchcase(et, g) for g in globs):
            return False
    if "min_severity" in spec and ref_severity(event) < SEVERITIES.index(spec["min_severity"]):
        return False
    if "subject" in spec:
        subject = event.get("subject") or {}
        for key in ("kind", "id"):
            if key in spec["subject"] and not fnmatch.fnmatchcase(
                ref_text(subject.get(key)), spec["subject"][key]
            ):
                return False
    return all(ref_matcher(m, event) for m in spec.get("matchers", []))


def ref_route(specs: list[dict[str, Any]], event: dict[str, Any]) -> tuple[list[int], dict[str, int]]:
    hits: list[int] = []
    for i, spec in enumerate(specs):
        if spec.get("default"):
            continue
        if ref_matches(spec, event):
            hits.append(i)
            if not spec.get("continue"):
                break
    if not hits and specs and specs[-1].get("default"):
        hits = [len(specs) - 1]
    sent: dict[str, int] = {}
    for i in hits:
        to = specs[i]["to"]
        for d in [to] if isinstance(to, str) else to:
            sent.setdefault(d, i)
    return hits, sent


# --- strategies ----------------------------------------------------------------------------------------
matcher = st.one_of(
    st.builds(
        lambda f, o, v: f"{f}{o}{json.dumps(v)}",
        st.sampled_from(FIELDS),
        st.sampled_from(["=", "!="]),
        st.sampled_from(VALUES),
    ),
    st.builds(
        lambda f, o, v: f"{f}{o}{json.dumps(v)}",
        st.sampled_from(FIELDS),
        st.sampled_from(["=~", "!~"]),
        st.sampled_from(REGEXES),
    ),
)


@st.composite
def route_spec(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "to": draw(st.lists(st.sampled_from(DESTINATIONS), min_size=1, max_size=3, unique=True))
    }
    if draw(st.booleans()):
        spec["event_type"] = draw(
            st.one_of(st.sampled_from(GLOBS), st.lists(st.sampled_from(GLOBS), min_size=1, max_size=2))
        )
    if draw(st.booleans()):
        spec["min_severity"] = draw(st.sampled_from(SEVERITIES))
    if draw(st.integers(0, 3)) == 0:
        spec["subject"] = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "kind": st.sampled_from(["session", "x*"]),
                    "id": st.sampled_from(["a", "*", "p?od"]),
                },
            ).filter(bool)
        )
    if draw(st.booleans()):
        spec["matchers"] = draw(st.lists(matcher, max_size=3))
    if draw(st.booleans()):
        spec["continue"] = True
    return spec


@st.composite
def route_list(draw: st.DrawFn) -> list[dict[str, Any]]:
    specs = draw(st.lists(route_spec(), max_size=6))
    if draw(st.booleans()):
        specs.append(
            {
                "default": True,
                "to": draw(st.lists(st.sampled_from(DESTINATIONS), min_size=1, max_size=2, unique=True)),
            }
        )
    return specs


scalar = st.one_of(st.sampled_from(VALUES), st.integers(0, 2), st.booleans(), st.none())


@st.composite
def event(draw: st.DrawFn) -> dict[str, Any]:
    ev: dict[str, Any] = {"event_type": draw(st.sampled_from(TYPES))}
    for key in ("env", "release"):
        if draw(st.booleans()):
            ev[key] = draw(scalar)
    if draw(st.booleans()):
        ev["labels"] = draw(
            st.dictionaries(st.sampled_from(["team", "a.b", "env"]), st.sampled_from(VALUES), max_size=3)
        )
    if draw(st.booleans()):
        ev["nested"] = {"key": draw(scalar)}
    if draw(st.booleans()):
        ev[draw(st.sampled_from(["severity", "max_severity"]))] = draw(
            st.sampled_from([*SEVERITIES, "HIGH", "bogus"])
        )
    if draw(st.booleans()):
        ev["subject"] = {
            "kind": draw(st.sampled_from(["session", "xy", "z"])),
            "id": draw(st.sampled_from(["a", "prod", "b"])),
        }
    return ev


@settings(max_examples=600, deadline=None)
@given(specs=route_list(), events=st.lists(event(), min_size=1, max_size=5))
def test_compiled_routes_agree_with_the_reference(
    specs: list[dict[str, Any]], events: list[dict[str, Any]]
) -> None:
    try:
        table = compile_routes(specs, source="t.yaml", destinations=DESTINATIONS)
    except ConfigError:
        assume(False)  # refused configs are covered by the config-error tests
        return
    for ev in events:  # several events: the candidate cache is reused across them
        decision = table.route(ev)
        hits, sent = ref_route(specs, ev)
        assert [r.index for r in decision.routes] == hits
        assert dict(decision.destinations) == {d: table.routes[i].name for d, i in sent.items()}
        assert decision.unrouted == (not sent)


@settings(max_examples=300, deadline=None)
@given(spec=route_spec(), events=st.lists(event(), min_size=1, max_size=8))
def test_a_refused_contradiction_matches_no_event(spec: dict[str, Any], events: list[dict[str, Any]]) -> None:
    """A route refused as 'can never match' really matches none of these events (the refusal is sound)."""
    try:
        compile_routes([spec], source="t.yaml", destinations=DESTINATIONS)
    except ConfigError as exc:
        message = str(exc)
    else:
        return
    assert "can never match" in message
    for ev in events:
        assert not ref_matches(spec, ev)
