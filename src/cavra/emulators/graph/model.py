"""The Graph emulator's model: known object types and their checks, error bodies, and per-hub state."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from weakref import WeakKeyDictionary

from aiohttp import web

from cavra.emulators.framework import EmulatorHub, json_response

AUDIENCES = ("https://graph.microsoft.com", "00000003-0000-0000-c000-000000000000")
WRITE_ROLE = "DeviceManagementConfiguration.ReadWrite.All"
READ_ROLE = "DeviceManagementConfiguration.Read.All"
DEMO_GROUP_ID = "5e2b8c1d-7a4f-4e39-b6d0-2c9f1a8e7b35"

_COMMON = {
    "@odata.type",
    "displayName",
    "description",
    "roleScopeTagIds",
    "id",
    "createdDateTime",
    "lastModifiedDateTime",
    "version",
}


def _spec(collection: str, versions: str, required: str, b64: str, known: str) -> _Spec:
    return (collection, tuple(versions.split()), set(required.split()), set(b64.split()), set(known.split()))


_Spec = tuple[str, tuple[str, ...], set[str], set[str], set[str]]
_SCRIPT = "fileName runAsAccount"
#: type -> (collection, versions, required properties, base64 properties, other known properties)
TYPES: dict[str, _Spec] = {
    "#microsoft.graph.macOSCustomConfiguration": _spec(
        "deviceConfigurations",
        "v1.0 beta",
        "displayName payloadName payload",
        "payload",
        "payloadName payloadFileName deploymentChannel",
    ),
    "#microsoft.graph.iosCustomConfiguration": _spec(
        "deviceConfigurations",
        "v1.0 beta",
        "displayName payloadName payload",
        "payload",
        "payloadName payloadFileName",
    ),
    "#microsoft.graph.windows10CustomConfiguration": _spec(
        "deviceConfigurations", "v1.0 beta", "displayName", "", "omaSettings"
    ),
    "#microsoft.graph.deviceShellScript": _spec(
        "deviceShellScripts",
        "beta",
        "displayName scriptContent fileName",
        "scriptContent",
        f"{_SCRIPT} executionFrequency retryCount blockExecutionNotifications",
    ),
    "#microsoft.graph.deviceManagementScript": _spec(
        "deviceManagementScripts",
        "beta",
        "displayName scriptContent fileName",
        "scriptContent",
        f"{_SCRIPT} enforceSignatureCheck runAs32Bit",
    ),
}
COLLECTIONS = {spec[0] for spec in TYPES.values()}
ASSIGN_KEYS = {
    "deviceConfigurations": "assignments",
    "deviceShellScripts": "deviceManagementScriptAssignments",
    "deviceManagementScripts": "deviceManagementScriptAssignments",
}
GROUP_TARGETS = {"#microsoft.graph.groupAssignmentTarget", "#microsoft.graph.exclusionGroupAssignmentTarget"}
TARGETS = GROUP_TARGETS | {
    "#microsoft.graph.allDevicesAssignmentTarget",
    "#microsoft.graph.allLicensedUsersAssignmentTarget",
}
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
FILTER = re.compile(r"^\s*displayName\s+eq\s+'((?:[^']|'')*)'\s*$")


@dataclass
class Settings:
    """The write throttle (Intune: 100 writes per 20 s per application per tenant)."""

    write_limit: int = 100
    write_window: float = 20.0


@dataclass
class GraphState:
    """Objects per collection, their assignments, and each application's recent writes."""

    objects: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    assignments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    writes: dict[str, deque[float]] = field(default_factory=dict)

    def clear(self) -> None:
        self.objects.clear()
        self.assignments.clear()
        self.writes.clear()

    def collection(self, name: str) -> dict[str, dict[str, Any]]:
        return self.objects.setdefault(name, {})


_STATES: WeakKeyDictionary[EmulatorHub, GraphState] = WeakKeyDictionary()


def state(hub: EmulatorHub) -> GraphState:
    """The Graph emulator's state on this hub."""
    found = _STATES.get(hub)
    if found is None:
        found = GraphState()
        _STATES[hub] = found
    return found


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def graph_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    request_id = str(uuid.uuid4())
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {"date": now_iso()[:19], "request-id": request_id, "client-request-id": request_id},
        }
    }
    return json_response(body, status=status, headers={"request-id": request_id, **(headers or {})})


def _valid_base64(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def validate(body: Any, collection: str, version: str, *, existing_type: str | None = None) -> str | None:
    """The ``invalidRequest`` message for a create/update body, or None when it is acceptable."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    odata_type = body.get("@odata.type")
    if not isinstance(odata_type, str) or not odata_type:
        return "A type named '@odata.type' is required for the resource in the request body."
    spec = TYPES.get(odata_type)
    if spec is None or spec[0] != collection or version not in spec[1]:
        return f"The type '{odata_type}' is not a known type for the collection '{collection}'."
    if existing_type is not None and odata_type != existing_type:
        return f"The type '{odata_type}' does not match the object's type '{existing_type}'."
    _, _, required, b64, known = spec
    for name in body:
        if name not in _COMMON and name not in known and name not in required:
            return f"The property '{name}' does not exist on type '{odata_type.removeprefix('#')}'."
    if existing_type is None:
        for name in sorted(required):
            if body.get(name) in (None, ""):
                return f"The property '{name}' is required."
    for name in b64:
        if name in body and not _valid_base64(body[name]):
            return f"The property '{name}' must be base64-encoded binary content."
    return None
