"""Matcher semantics the property test does not draw: subjects, quoting, label names with dots, globs."""

from __future__ import annotations

from typing import Any

import pytest

from cavra.routing import Glob, Matcher, compile_routes, severity_of, subject_of

DESTS = ["a", "b", "c"]


def route(spec: dict[str, Any], event: dict[str, Any]) -> list[str]:
    table = compile_routes([{**spec, "to": "a"}], source="t", destinations=DESTS)
    return list(table.route(event).destinations)


@pytest.mark.parametrize(
    ("event", "subject"),
    [
        (
            {"event_type": "cavra.release.rollback_execution", "execution_id": "rre_1", "session_id": "s"},
            ("rollback_execution", "rre_1"),
        ),
        (
            {"event_type": "cavra.release.promotion_audit", "execution_id": "rpe_1"},
            ("promotion_execution", "rpe_1"),
        ),
        (
            {"event_type": "cavra.endpoint_management.publication", "export_id": "eme_1"},
            ("endpoint_export", "eme_1"),
        ),
        ({"event_type": "cavra.evidence_bundle", "session_id": "s-1"}, ("session", "s-1")),
        ({"event_type": "x", "subject": {"kind": "agent", "id": 7}, "session_id": "s"}, ("agent", "7")),
        ({"event_type": "x"}, ("", "")),
    ],
)
def test_subject_of(event: dict[str, Any], subject: tuple[str, str]) -> None:
    assert subject_of(event) == subject


def test_subject_route_matches_kind_and_id_globs() -> None:
    spec = {"subject": {"kind": "rollback_execution", "id": "rre_prod*"}}
    assert route(spec, {"event_type": "cavra.release.rollback_execution", "execution_id": "rre_prod_1"}) == [
        "a"
    ]
    assert route(spec, {"event_type": "cavra.release.rollback_execution", "execution_id": "rre_dev_1"}) == []


def test_severity_prefers_max_severity_and_ignores_case_and_unknowns() -> None:
    assert severity_of({"max_severity": "HIGH", "severity": "low"}) == 3
    assert severity_of({"max_severity": "bogus", "severity": "medium"}) == 2
    assert severity_of({}) == 0
    assert route({"min_severity": "high"}, {"event_type": "x", "severity": "critical"}) == ["a"]
    assert route({"min_severity": "high"}, {"event_type": "x", "severity": "medium"}) == []
    assert route({"min_severity": "high"}, {"event_type": "x"}) == []


def test_quoted_values_unquoted_values_and_escapes() -> None:
    assert Matcher.parse('team = "ops \\"east\\""').value == 'ops "east"'
    assert Matcher.parse("team=ops").value == "ops"
    assert Matcher.parse('x=~"a.b"').test("a-b") and not Matcher.parse('x=~"a.b"').test("a-bc")
    assert str(Matcher.parse("x!=a")) == 'x!="a"'


def test_label_names_may_hold_dots_and_slashes() -> None:
    spec = {"matchers": ['labels.app.kubernetes.io/name="cavra"']}
    assert route(spec, {"event_type": "x", "labels": {"app.kubernetes.io/name": "cavra"}}) == ["a"]
    assert route(spec, {"event_type": "x", "labels": {"app": {"kubernetes": "no"}}}) == []


def test_missing_fields_read_empty_as_in_alertmanager() -> None:
    assert route({"matchers": ['env!="prod"']}, {"event_type": "x"}) == ["a"]
    assert route({"matchers": ['env=""']}, {"event_type": "x"}) == ["a"]
    assert route({"matchers": ['env=""']}, {"event_type": "x", "env": "prod"}) == []
    assert route({"matchers": ['count="3"', 'dry="true"']}, {"event_type": "x", "count": 3, "dry": True}) == [
        "a"
    ]


def test_globs_are_whole_text_and_case_sensitive() -> None:
    g = Glob.compile("cavra.release.*")
    assert g.test("cavra.release.rollback_execution") and not g.test("x.cavra.release.y")
    assert not Glob.compile("Cavra.*").test("cavra.x")
    assert route({"event_type": ["a.*", "b"]}, {"event_type": "b"}) == ["a"]
