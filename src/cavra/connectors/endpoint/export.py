"""The endpoint publication event, read and checked once for the Jamf, Intune and Linux fleet connectors.

The event (``cavra.endpoint_management.publication``) is built from an endpoint-management export manifest
elsewhere; the endpoint connectors take it as given and refuse, before sending anything, an event that is
not fit to publish: the wrong event type, no ``export_id`` / ``release`` / ``channel``, an approval other
than ``approved``, no artifacts, an artifact without a name, a 64-hex ``sha256`` or a size, or inline
content (``content_base64``) whose bytes do not match the declared size and digest.

From a valid event this module derives the *governed runtime configuration* that Jamf and Intune publish:
a small, plist-safe mapping (export identity, release, channel, approval, artifacts with their digests and,
when the event carries them, their bytes), its SHA-256 digest over canonical JSON, and a macOS
configuration profile (``.mobileconfig``) carrying it in the ``com.cavra.governed-runtime`` preference
domain. The profile's identifiers are derived from the export id, so a republish replaces the profile on
devices instead of installing a second one. Verification reads the profile back and compares the digest of
the configuration it finds with the digest of the one that was sent.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import plistlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cavra.connectors.base import PayloadTooLarge
from cavra.errors import InputError
from cavra.events import canonical_json

EVENT_TYPE = "cavra.endpoint_management.publication"
CONFIG_SCHEMA = "cavra.governed_runtime_configuration.v1"
PREFERENCE_DOMAIN = "com.cavra.governed-runtime"
#: inline artifact bytes embedded in the published configuration, at most (decoded)
MAX_EMBEDDED_BYTES = 256 * 1024

_NAMESPACE = uuid.UUID("6c0f5f0e-3b1a-5d4e-9c7b-2a8d4e6f1b30")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_EXPORT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


@dataclass(frozen=True)
class Artifact:
    """One artifact of the export: its name, digest, size and (optionally) its bytes as base64."""

    name: str
    sha256: str
    size: int
    content_base64: str | None = None

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class EndpointExport:
    """A checked endpoint publication event."""

    event_id: str
    export_id: str
    release: str
    channel: str
    approval: Mapping[str, str]
    artifacts: tuple[Artifact, ...]

    @property
    def profile_name(self) -> str:
        """The name (Jamf) or displayName (Intune) of the published object: stable per export."""
        return f"CAVRA {self.export_id}"

    def configuration(self) -> dict[str, Any]:
        """The governed runtime configuration (plist-safe: strings, integers, lists and mappings only)."""
        artifacts = []
        for artifact in self.artifacts:
            entry = artifact.summary()
            if artifact.content_base64 is not None:
                entry["content_base64"] = artifact.content_base64
            artifacts.append(entry)
        return {
            "schema": CONFIG_SCHEMA,
            "export_id": self.export_id,
            "release": self.release,
            "channel": self.channel,
            "event_id": self.event_id,
            "approval": dict(self.approval),
            "artifacts": artifacts,
        }

    def digest(self) -> str:
        return configuration_digest(self.configuration())

    def mobileconfig(self) -> bytes:
        """A macOS configuration profile carrying the configuration in the CAVRA preference domain."""
        config = self.configuration()
        digest = configuration_digest(config)
        profile = {
            "PayloadType": "Configuration",
            "PayloadVersion": 1,
            "PayloadScope": "System",
            "PayloadOrganization": "CAVRA",
            "PayloadDisplayName": self.profile_name,
            "PayloadDescription": self.description(digest),
            "PayloadIdentifier": f"{PREFERENCE_DOMAIN}.{self.export_id}",
            "PayloadUUID": str(uuid.uuid5(_NAMESPACE, f"profile:{self.export_id}")).upper(),
            "PayloadContent": [
                {
                    "PayloadType": PREFERENCE_DOMAIN,
                    "PayloadVersion": 1,
                    "PayloadDisplayName": "CAVRA governed runtime configuration",
                    "PayloadIdentifier": f"{PREFERENCE_DOMAIN}.{self.export_id}.settings",
                    "PayloadUUID": str(uuid.uuid5(_NAMESPACE, f"settings:{self.export_id}")).upper(),
                    "Configuration": config,
                    "ConfigurationDigest": f"sha256:{digest}",
                }
            ],
        }
        return plistlib.dumps(profile, fmt=plistlib.FMT_XML, sort_keys=True)

    def description(self, digest: str | None = None) -> str:
        return (
            f"CAVRA governed runtime configuration for export {self.export_id}, release {self.release}, "
            f"channel {self.channel} ({len(self.artifacts)} artifacts). "
            f"sha256:{digest or self.digest()}"
        )


def configuration_digest(config: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the configuration's canonical JSON."""
    return hashlib.sha256(canonical_json(dict(config))).hexdigest()


def configuration_from_mobileconfig(data: bytes) -> dict[str, Any] | None:
    """The governed configuration found in a profile read back from the provider, or None."""
    try:
        profile = plistlib.loads(data)
    except Exception:  # expat, plistlib and value errors alike: not a property list
        return None
    if not isinstance(profile, dict):
        return None
    for payload in profile.get("PayloadContent") or []:
        if isinstance(payload, dict) and payload.get("PayloadType") == PREFERENCE_DOMAIN:
            config = payload.get("Configuration")
            return config if isinstance(config, dict) else None
    return None


def _text(event: Mapping[str, Any], name: str, where: str) -> str:
    value = event.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}: field {name} is required and must be a non-empty string")
    return value.strip()


def _artifact(raw: Any, index: int, where: str) -> Artifact:
    at = f"{where}: artifacts[{index}]"
    if not isinstance(raw, Mapping):
        raise InputError(f"{at} must be an object with name, sha256 and size")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"{at}.name is required")
    sha = raw.get("sha256")
    if not isinstance(sha, str) or not _SHA256.match(sha.lower()):
        raise InputError(f"{at} ({name}): sha256 must be 64 hexadecimal characters")
    size = raw.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise InputError(f"{at} ({name}): size must be a non-negative integer")
    content = raw.get("content_base64")
    if content is not None:
        if not isinstance(content, str):
            raise InputError(f"{at} ({name}): content_base64 must be a base64 string")
        try:
            data = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise InputError(f"{at} ({name}): content_base64 is not valid base64") from None
        if len(data) != size:
            raise InputError(f"{at} ({name}): content_base64 holds {len(data)} bytes, size says {size}")
        if hashlib.sha256(data).hexdigest() != sha.lower():
            raise InputError(f"{at} ({name}): content_base64 does not match its sha256")
    return Artifact(name=name.strip(), sha256=sha.lower(), size=size, content_base64=content)


def parse_export(event: Mapping[str, Any], provider: str) -> EndpointExport:
    """Check an endpoint publication event; an unfit one raises :class:`InputError` naming the field."""
    where = f"{provider}: endpoint publication event"
    event_type = event.get("event_type")
    if event_type != EVENT_TYPE:
        raise InputError(f"{provider}: expects a {EVENT_TYPE} event, got event_type {event_type!r}")
    export_id = _text(event, "export_id", where)
    if not _EXPORT_ID.match(export_id):
        raise InputError(f"{where}: export_id must be 1-128 letters, digits or . _ : - (got {export_id!r})")
    approval = event.get("approval")
    status = approval.get("status") if isinstance(approval, Mapping) else None
    if status != "approved":
        raise InputError(f"{where}: approval.status must be 'approved' to publish (got {status!r})")
    assert isinstance(approval, Mapping)
    kept = {k: str(v) for k, v in approval.items() if isinstance(v, (str, int)) and not isinstance(v, bool)}
    raw_artifacts = event.get("artifacts")
    if not isinstance(raw_artifacts, list) or not raw_artifacts:
        raise InputError(f"{where}: field artifacts is required and must list at least one artifact")
    artifacts = tuple(_artifact(raw, i, where) for i, raw in enumerate(raw_artifacts))
    embedded = sum(a.size for a in artifacts if a.content_base64 is not None)
    if embedded > MAX_EMBEDDED_BYTES:
        raise PayloadTooLarge(
            f"{provider}: inline artifact content is {embedded} bytes; at most {MAX_EMBEDDED_BYTES} bytes "
            "are embedded in a published configuration (publish large artifacts by reference, without "
            "content_base64)"
        )
    event_id = _text(event, "event_id", where)
    return EndpointExport(
        event_id=event_id,
        export_id=export_id,
        release=_text(event, "release", where),
        channel=_text(event, "channel", where),
        approval=kept,
        artifacts=artifacts,
    )
