"""Governance record models: the examples validate, errors name the source and the field, schemas ship."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from cavra.errors import InputError
from cavra.governance.records import KINDS, json_schema, kind_of, validate_record
from cavra.governance.service import load_record_file

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = {
    "promotion_execution": ROOT
    / "examples/release/rollout-promotion-execution/rollout-promotion-execution.json",
    "rollback_execution": ROOT
    / "examples/release/rollout-rollback-execution/rollout-rollback-execution.json",
    "endpoint_export": ROOT
    / "examples/release/endpoint-management-export/endpoint-management-export-manifest.json",
    "evidence_bundle": ROOT / "examples/evidence/session-decisions.json",
}
SCHEMA_FILES = {
    "promotion_execution": "promotion-execution.v1.json",
    "rollback_execution": "rollback-execution.v1.json",
    "endpoint_export": "endpoint-management-export.v1.json",
    "evidence_bundle": "evidence-bundle.v1.json",
}


def example(kind: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXAMPLES[kind].read_text())
    return data


@pytest.mark.parametrize("kind", list(KINDS))
def test_examples_validate_and_match_the_shipped_schema(kind: str) -> None:
    record = load_record_file(EXAMPLES[kind], kind)
    shipped = json.loads((ROOT / "src/cavra/schemas" / SCHEMA_FILES[kind]).read_text())
    assert shipped == json_schema(kind), "regenerate src/cavra/schemas from cavra.governance.records"
    jsonschema.validate(example(kind), shipped)
    jsonschema.validate(record, shipped)
    assert record["schema_version"] == shipped["title"]


def test_normalized_record_fills_defaults_and_utc_times() -> None:
    raw = example("promotion_execution") | {"started_at": "2025-11-20T12:00:00+02:00"}
    raw.pop("schema_version")
    record = validate_record("promotion_execution", raw)
    assert record["schema_version"] == "cavra.release.promotion_execution.v1"
    assert record["started_at"] == "2025-11-20T10:00:00Z"
    assert record["labels"] == {}


@pytest.mark.parametrize(
    ("kind", "other"),
    [
        ("promotion_execution", "rollback_execution"),
        ("rollback_execution", "promotion_execution"),
        ("endpoint_export", "promotion_execution"),
        ("evidence_bundle", "endpoint_export"),
        ("promotion_execution", "evidence_bundle"),
    ],
)
def test_a_record_of_another_kind_is_named(kind: str, other: str) -> None:
    with pytest.raises(InputError) as err:
        validate_record(kind, example(other), source="x.json")
    assert str(err.value).startswith(f"x.json: this is a {KINDS[other].label}")
    assert f"expected a {KINDS[kind].label}" in str(err.value)


@pytest.mark.parametrize(
    ("kind", "change", "expected"),
    [
        ("promotion_execution", {"execution_id": "prod"}, "field execution_id: String should match pattern"),
        ("promotion_execution", {"status": "done"}, "field status: Input should be"),
        ("promotion_execution", {"started_at": "yesterday"}, "field started_at"),
        (
            "promotion_execution",
            {"started_at": "2025-11-20T10:00:00"},
            "field started_at: Input should have timezone",
        ),
        (
            "promotion_execution",
            {"completed_at": "2025-11-20T09:00:00Z"},
            "completed_at is before started_at",
        ),
        ("promotion_execution", {"colour": "blue"}, "field colour: unknown field"),
        (
            "promotion_execution",
            {"started_at": "0001-01-01T00:00:00+14:00"},
            "field started_at: out of range",
        ),
        (
            "endpoint_export",
            {"generated_at": "9999-12-31T23:59:59-14:00"},
            "field generated_at: out of range",
        ),
        (
            "evidence_bundle",
            {
                "decisions": [
                    {
                        "decision": "block",
                        "severity": "low",
                        "action": "a",
                        "decided_at": "0001-01-01T00:00:00+01:00",
                    }
                ]
            },
            "field decisions[0].decided_at: out of range",
        ),
        ("promotion_execution", {"gates": [{"name": "g", "status": "maybe"}]}, "field gates[0].status"),
        ("rollback_execution", {"promotion_execution_id": "rre_x"}, "field promotion_execution_id"),
        ("rollback_execution", {"reason": ""}, "field reason"),
        ("endpoint_export", {"approval": {"status": "approved"}}, "needs approver and approved_at"),
        ("endpoint_export", {"approval": {"status": "maybe"}}, "field approval.status"),
        ("endpoint_export", {"providers": ["splunk"]}, "field providers[0]"),
        ("endpoint_export", {"providers": []}, "field providers"),
        ("endpoint_export", {"artifacts": []}, "field artifacts"),
        (
            "evidence_bundle",
            {"decisions": [{"decision": "block", "severity": "severe", "action": "a"}]},
            "field decisions[0].severity",
        ),
    ],
)
def test_validation_errors_name_the_source_and_field(
    kind: str, change: dict[str, Any], expected: str
) -> None:
    with pytest.raises(InputError) as err:
        validate_record(kind, example(kind) | change, source="rec.json")
    assert str(err.value).startswith("rec.json: ")
    assert expected in str(err.value)


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        ("artifacts/a.json", True),
        ("./a.json", True),
        ("../a.json", False),
        ("artifacts/../../a.json", False),
        ("/etc/passwd", False),
        ("C:/Windows/a.json", False),
        ("..\\a.json", False),
    ],
)
def test_artifact_paths_stay_inside_the_manifest_directory(path: str, ok: bool) -> None:
    manifest = example("endpoint_export")
    manifest["artifacts"][0]["path"] = path
    if ok:
        validate_record("endpoint_export", manifest)
    else:
        with pytest.raises(InputError, match=r"field artifacts\[0\]\.path: must be a path relative"):
            validate_record("endpoint_export", manifest)


def test_artifact_names_are_unique_and_sha256_normalized() -> None:
    manifest = example("endpoint_export")
    manifest["artifacts"][0]["sha256"] = manifest["artifacts"][0]["sha256"].upper()
    assert validate_record("endpoint_export", manifest)["artifacts"][0]["sha256"].islower()
    manifest["artifacts"][1]["name"] = manifest["artifacts"][0]["name"]
    with pytest.raises(InputError, match="appears more than once"):
        validate_record("endpoint_export", manifest)


def test_decisions_keep_extra_fields_and_lowercase_severity() -> None:
    bundle = {
        "session_id": "s",
        "decisions": [{"decision": "allow", "severity": "HIGH", "action": "a", "tool": "t"}],
    }
    record = validate_record("evidence_bundle", bundle)
    assert record["decisions"][0]["severity"] == "high" and record["decisions"][0]["tool"] == "t"


def test_kind_aliases_and_unknown_kinds() -> None:
    assert kind_of("promotion-executions") is KINDS["promotion_execution"]
    assert kind_of("endpoint-management-export") is KINDS["endpoint_export"]
    with pytest.raises(InputError, match="unknown record kind 'integration'"):
        kind_of("integration")


def test_non_object_body(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="must be a JSON object, got list"):
        validate_record("promotion_execution", [])
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(InputError, match=r"bad.json: not valid JSON \(line 1"):
        load_record_file(bad, "promotion_execution")
    with pytest.raises(InputError, match="is a directory"):
        load_record_file(tmp_path, "promotion_execution")
