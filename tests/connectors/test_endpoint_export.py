"""The endpoint publication event as the endpoint connectors read it, and the profile derived from it."""

from __future__ import annotations

import base64
import hashlib
import plistlib
from typing import Any

import pytest

from cavra.connectors.base import PayloadTooLarge
from cavra.connectors.endpoint.export import (
    MAX_EMBEDDED_BYTES,
    PREFERENCE_DOMAIN,
    configuration_digest,
    configuration_from_mobileconfig,
    parse_export,
)
from cavra.errors import InputError
from tests.connectors.kit import publication_event


def event(**changes: Any) -> dict[str, Any]:
    return {**publication_event("evt_export_0001"), **changes}


def artifact(content: bytes, **changes: Any) -> dict[str, Any]:
    base = {
        "name": "policy.json",
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
        "content_base64": base64.b64encode(content).decode(),
    }
    return {**base, **changes}


def test_valid_event_is_read() -> None:
    export = parse_export(event(), "jamf")
    assert (export.export_id, export.release, export.channel) == ("eme_kit", "2026.11.1", "stable")
    assert export.approval == {"status": "approved", "approver": "release-board"}
    assert export.profile_name == "CAVRA eme_kit"
    assert len(export.artifacts) == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"event_type": "cavra.evidence_bundle"}, "expects a cavra.endpoint_management.publication event"),
        ({"export_id": ""}, "field export_id is required"),
        ({"export_id": "eme/../x"}, "export_id must be"),
        ({"release": None}, "field release is required"),
        ({"channel": 3}, "field channel is required"),
        ({"approval": {"status": "pending"}}, "approval.status must be 'approved'"),
        ({"approval": None}, "approval.status must be 'approved'"),
        ({"artifacts": []}, "field artifacts is required"),
        ({"artifacts": "a.zip"}, "field artifacts is required"),
        ({"artifacts": ["a.zip"]}, "artifacts[0] must be an object"),
        ({"artifacts": [{"sha256": "0" * 64, "size": 1}]}, "artifacts[0].name is required"),
        ({"artifacts": [{"name": "a", "sha256": "xyz", "size": 1}]}, "sha256 must be 64 hexadecimal"),
        ({"artifacts": [{"name": "a", "sha256": "0" * 64, "size": -1}]}, "size must be a non-negative"),
        ({"artifacts": [{"name": "a", "sha256": "0" * 64, "size": True}]}, "size must be a non-negative"),
        ({"artifacts": [artifact(b"abc", content_base64="!!")]}, "not valid base64"),
        ({"artifacts": [artifact(b"abc", size=4)]}, "holds 3 bytes, size says 4"),
        ({"artifacts": [artifact(b"abc", sha256="0" * 64)]}, "does not match its sha256"),
    ],
)
def test_unfit_events_are_refused_naming_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=r"^jamf: ") as caught:
        parse_export(event(**changes), "jamf")
    assert message in str(caught.value)


def test_too_much_inline_content_is_payload_too_large() -> None:
    big = b"x" * (MAX_EMBEDDED_BYTES + 1)
    with pytest.raises(PayloadTooLarge, match=str(MAX_EMBEDDED_BYTES)):
        parse_export(event(artifacts=[artifact(big)]), "intune")
    by_reference = {k: v for k, v in artifact(big).items() if k != "content_base64"}
    assert parse_export(event(artifacts=[by_reference]), "intune").artifacts[0].content_base64 is None


def test_mobileconfig_round_trips_the_configuration_and_keeps_stable_identifiers() -> None:
    one = parse_export(event(), "jamf")
    two = parse_export(event(event_id="evt_export_0002", release="2026.11.2"), "jamf")
    profile_one = plistlib.loads(one.mobileconfig())
    profile_two = plistlib.loads(two.mobileconfig())
    assert profile_one["PayloadUUID"] == profile_two["PayloadUUID"]  # a republish replaces, never duplicates
    assert profile_one["PayloadIdentifier"] == f"{PREFERENCE_DOMAIN}.eme_kit"
    payload = profile_one["PayloadContent"][0]
    assert payload["PayloadType"] == PREFERENCE_DOMAIN
    assert payload["ConfigurationDigest"] == f"sha256:{one.digest()}"
    found = configuration_from_mobileconfig(one.mobileconfig())
    assert found == one.configuration()
    assert configuration_digest(found) == one.digest() != two.digest()
    assert found["artifacts"][0]["content_base64"] == event()["artifacts"][0]["content_base64"]


def test_configuration_from_anything_else_is_none() -> None:
    assert configuration_from_mobileconfig(b"not a plist") is None
    assert configuration_from_mobileconfig(plistlib.dumps({"PayloadContent": [{"PayloadType": "x"}]})) is None
    assert configuration_from_mobileconfig(plistlib.dumps([1, 2])) is None
