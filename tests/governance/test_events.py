"""Event builders: counts and severity order, stable ids, and the publication rules."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cavra.connectors.endpoint.export import parse_export
from cavra.events import SEVERITIES
from cavra.governance.events import (
    INLINE_LIMIT,
    PublicationRefused,
    evidence_bundle_event,
    promotion_audit_event,
    publication_event,
    rollback_execution_event,
)
from cavra.governance.records import validate_record
from tests.governance.test_records import EXAMPLES, example

EXPORT_DIR = EXAMPLES["endpoint_export"].parent


def bundle(*decisions: tuple[str, str]) -> dict[str, Any]:
    return validate_record(
        "evidence_bundle",
        {
            "session_id": "s1",
            "decisions": [
                {"decision": d, "severity": s, "action": f"act-{i}"} for i, (d, s) in enumerate(decisions)
            ],
        },
    )


def test_evidence_bundle_event_counts() -> None:
    event = evidence_bundle_event(validate_record("evidence_bundle", example("evidence_bundle")))
    assert event["event_type"] == "cavra.evidence_bundle"
    assert event["session_id"] == "demo-session"
    assert event["decision_count"] == 7
    assert event["blocked_count"] == 4
    assert event["approval_required_count"] == 1
    assert event["allowed_count"] == 2
    assert event["max_severity"] == "high"
    assert event["blocked_actions"] == ["secrets.read", "http.request", "shell.exec"]


def test_max_severity_is_by_order_not_alphabet() -> None:
    # alphabetically: medium > low > info > high > critical
    assert (
        evidence_bundle_event(bundle(("allow", "medium"), ("block", "critical")))["max_severity"]
        == "critical"
    )
    assert evidence_bundle_event(bundle(("allow", "medium"), ("block", "high")))["max_severity"] == "high"
    assert evidence_bundle_event(bundle(("allow", "low"), ("allow", "info")))["max_severity"] == "low"
    assert evidence_bundle_event(bundle())["max_severity"] == "info"


@given(st.lists(st.sampled_from(SEVERITIES), max_size=20))
def test_max_severity_property(severities: list[str]) -> None:
    event = evidence_bundle_event(bundle(*[("block", s) for s in severities]))
    expected = max(severities, key=SEVERITIES.index) if severities else "info"
    assert event["max_severity"] == expected
    assert event["blocked_count"] == len(severities)


def test_event_ids_are_stable_and_content_derived() -> None:
    record = validate_record("promotion_execution", example("promotion_execution"))
    first = promotion_audit_event(record)
    assert first["event_id"] == promotion_audit_event(dict(record))["event_id"]
    assert first["event_id"].startswith("evt_") and len(first["event_id"]) == 36
    changed = promotion_audit_event(record | {"status": "failed"})
    assert changed["event_id"] != first["event_id"]
    assert changed["severity"] == "high" and first["severity"] == "info"
    # the same record id under another event type gives another id
    rollback = validate_record("rollback_execution", example("rollback_execution"))
    assert rollback_execution_event(rollback)["event_id"] != first["event_id"]


def test_promotion_and_rollback_events() -> None:
    promo = promotion_audit_event(validate_record("promotion_execution", example("promotion_execution")))
    assert promo["event_type"] == "cavra.release.promotion_audit"
    assert promo["execution_id"] == "rpe_prod" and promo["gate_count"] == 4 and promo["failed_gates"] == []
    rollback = rollback_execution_event(validate_record("rollback_execution", example("rollback_execution")))
    assert rollback["event_type"] == "cavra.release.rollback_execution"
    assert rollback["severity"] == "critical"
    assert rollback["execution_id"] == "rre_prod" and rollback["rolled_back_to"] == "2025.11.2"
    assert rollback["affected_target_count"] == 2


# --- publication -------------------------------------------------------------------------------------------
def manifest() -> dict[str, Any]:
    return validate_record("endpoint_export", example("endpoint_export"))


def test_publication_event_carries_verified_artifacts() -> None:
    event = publication_event(manifest(), EXPORT_DIR, provider="jamf")
    assert event["event_type"] == "cavra.endpoint_management.publication"
    assert (
        event["export_id"] == "eme_stable"
        and event["channel"] == "stable"
        and event["release"] == "2025.11.3"
    )
    assert event["approval"]["status"] == "approved" and event["approval"]["approver"]
    for item, spec in zip(event["artifacts"], manifest()["artifacts"], strict=True):
        content = (EXPORT_DIR / spec["path"]).read_bytes()
        assert base64.b64decode(item["content_base64"]) == content
        assert (item["name"], item["size"], item["sha256"]) == (spec["name"], len(content), spec["sha256"])
    assert event["event_id"] == publication_event(manifest(), EXPORT_DIR)["event_id"]
    # the endpoint connectors accept it as a publishable export
    checked = parse_export(event, "jamf")
    assert checked.export_id == "eme_stable" and len(checked.artifacts) == 2


def _write_export(tmp_path: Path, files: dict[str, bytes]) -> dict[str, Any]:
    (tmp_path / "a").mkdir(parents=True, exist_ok=True)
    artifacts = []
    for name, data in files.items():
        (tmp_path / "a" / name).write_bytes(data)
        artifacts.append(
            {"name": name, "path": f"a/{name}", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        )
    return validate_record("endpoint_export", example("endpoint_export") | {"artifacts": artifacts})


def test_large_artifacts_travel_by_reference(tmp_path: Path) -> None:
    big = os.urandom(INLINE_LIMIT + 1)
    half = os.urandom(INLINE_LIMIT // 2 + 10)
    export = _write_export(tmp_path, {"small.txt": b"hello", "big.bin": big, "half1": half, "half2": half})
    items = {a["name"]: a for a in publication_event(export, tmp_path)["artifacts"]}
    assert (
        items["small.txt"]["content_included"]
        and base64.b64decode(items["small.txt"]["content_base64"]) == b"hello"
    )
    assert not items["big.bin"]["content_included"] and "content_base64" not in items["big.bin"]
    assert items["big.bin"]["size"] == INLINE_LIMIT + 1
    # the inline budget is shared: the second half-size artifact goes by reference
    assert items["half1"]["content_included"] and not items["half2"]["content_included"]
    parse_export(publication_event(export, tmp_path), "jamf")  # within the connectors' embedding limit


@pytest.mark.parametrize("status", ["pending", "rejected"])
def test_unapproved_exports_are_refused(status: str) -> None:
    export = manifest() | {"approval": {"status": status, "approver": None, "approved_at": None}}
    with pytest.raises(PublicationRefused, match=f"eme_stable: publication refused: approval is '{status}'"):
        publication_event(export, EXPORT_DIR)


def test_artifact_problems_are_refused_naming_the_artifact(tmp_path: Path) -> None:
    shutil.copytree(EXPORT_DIR, tmp_path / "x")
    root = tmp_path / "x"
    (root / "artifacts/cavra-runtime.sh").write_bytes(b"#!/bin/sh\necho other\n")
    with pytest.raises(
        PublicationRefused, match=r"artifact cavra-runtime\.sh: sha256 of artifacts/cavra-runtime\.sh is"
    ):
        publication_event(manifest(), root)
    shutil.copy(EXPORT_DIR / "artifacts/cavra-runtime.sh", root / "artifacts/cavra-runtime.sh")
    publication_event(manifest(), root)
    (root / "artifacts/runtime-policy.json").unlink()
    with pytest.raises(
        PublicationRefused,
        match=r"artifact runtime-policy\.json: file artifacts/runtime-policy\.json not found",
    ):
        publication_event(manifest(), root)
    (root / "artifacts/runtime-policy.json").mkdir()
    with pytest.raises(PublicationRefused, match="is a directory"):
        publication_event(manifest(), root)


def test_size_mismatch_is_refused(tmp_path: Path) -> None:
    export = _write_export(tmp_path, {"f.txt": b"abc"})
    export["artifacts"][0]["size"] = 4
    with pytest.raises(PublicationRefused, match=r"f\.txt is 3 bytes, the manifest says 4"):
        publication_event(export, tmp_path)


def test_a_symlink_out_of_the_manifest_directory_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"outside")
    root = tmp_path / "export"
    (root / "a").mkdir(parents=True)
    (root / "a/link.txt").symlink_to(outside)
    export = _write_export(tmp_path / "unused", {"link.txt": b"outside"})
    with pytest.raises(PublicationRefused, match="leaves the manifest's directory"):
        publication_event(export, root)


def test_refusal_messages_carry_no_file_content(tmp_path: Path) -> None:
    export = _write_export(tmp_path, {"f.txt": b"TOP-SECRET-CONTENT"})
    (tmp_path / "a/f.txt").write_bytes(b"TOP-SECRET-CONTENT!")
    with pytest.raises(PublicationRefused) as err:
        publication_event(export, tmp_path)
    assert "TOP-SECRET" not in str(err.value)
    assert json.dumps(err.value.reason)
