"""The Graph emulator's model: known object types and their checks, error bodies, and per-hub state."""

from __future__ import annotations

import base64
import binascii
import json
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

#: the deviceConfiguration properties every type has in v1.0 (microsoft-graph-docs-contrib
#: api-reference/v1.0/resources/intune-deviceconfig-macoscustomconfiguration.md: id, lastModifiedDateTime,
#: createdDateTime, description, displayName, version, payloadName, payloadFileName, payload)
_COMMON = {
    "@odata.type",
    "displayName",
    "description",
    "id",
    "createdDateTime",
    "lastModifiedDateTime",
    "version",
}
#: beta adds scope tags (api-reference/beta/resources/intune-deviceconfig-macoscustomconfiguration.md)
_COMMON_BETA = {"roleScopeTagIds", "supportsScopeTags"}


def _spec(collection: str, versions: str, required: str, b64: str, known: str, beta: str = "") -> _Spec:
    return (
        collection,
        tuple(versions.split()),
        set(required.split()),
        set(b64.split()),
        set(known.split()),
        set(beta.split()),
    )


#: (collection, versions, required properties, base64 properties, other known properties, beta-only ones)
_Spec = tuple[str, tuple[str, ...], set[str], set[str], set[str], set[str]]
_SCRIPT = "fileName runAsAccount"
TYPES: dict[str, _Spec] = {
    "#microsoft.graph.macOSCustomConfiguration": _spec(
        "deviceConfigurations",
        "v1.0 beta",
        "displayName payloadName payload",
        "payload",
        "payloadName payloadFileName",
        "deploymentChannel",
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
    """The write throttle (Intune: 100 writes per 20 s per application per tenant), and how lists answer."""

    write_limit: int = 100
    write_window: float = 20.0
    #: answer a list as if ``$filter`` were not supported: every object, the filter silently ignored
    ignore_filter: bool = False
    #: objects per list page (0: one page); further pages are linked by ``@odata.nextLink``
    page_size: int = 0


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


def intune_message(message: str, collection: str) -> str:
    """Intune's error ``message``, itself a JSON string: ``{"_version": 3, "Message": "…"}``."""
    activity = str(uuid.uuid4())
    url = (
        "https://fef.msub01.manage.microsoft.com/DeviceConfiguration_2411/StatelessDeviceConfigurationFEService"
        f"/deviceManagement/{collection}?api-version=5024-10-01"
    )
    inner = {
        "_version": 3,
        "Message": f"{message} - Operation ID (for customer support): 00000000-0000-0000-0000-000000000000 - "
        f"Activity ID: {activity} - Url: {url}",
        "CustomApiErrorPhrase": "",
        "RetryAfter": None,
        "ErrorSourceService": "",
        "HttpHeaders": "{}",
    }
    return json.dumps(inner, indent=2).replace("\n", "\r\n")


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


def validate(
    body: Any, collection: str, version: str, *, existing_type: str | None = None
) -> tuple[str, str] | None:
    """Why a create/update body is refused, as ``(layer, message)``: ``odata`` for what Graph's OData layer
    refuses before Intune sees it (an unknown type or property: a plain message), ``intune`` for what the
    Intune service refuses (its message is a JSON string); None when the body is acceptable."""
    if not isinstance(body, dict):
        return "odata", "The request body must be a JSON object."
    odata_type = body.get("@odata.type")
    if not isinstance(odata_type, str) or not odata_type:
        return "odata", "A type named '@odata.type' is required for the resource in the request body."
    spec = TYPES.get(odata_type)
    if spec is None or spec[0] != collection or version not in spec[1]:
        return (
            "odata",
            f"A type named '{odata_type.removeprefix('#')}' could not be resolved by the model. When a model "
            "is available, each type name must resolve to a valid type.",
        )
    if existing_type is not None and odata_type != existing_type:
        return "intune", f"The type '{odata_type}' does not match the object's type '{existing_type}'."
    _, _, required, b64, known, beta = spec
    allowed = _COMMON | known | required | (beta | _COMMON_BETA if version == "beta" else set())
    for name in body:
        if name not in allowed:
            return (
                "odata",
                f"The property '{name}' does not exist on type '{odata_type.removeprefix('#')}'. Make sure "
                "to only use property names that are defined by the type or mark the type as open type.",
            )
    if existing_type is None:
        for name in sorted(required):
            if body.get(name) in (None, ""):
                return "intune", f"The property '{name}' is required."
    for name in b64:
        if name in body and not _valid_base64(body[name]):
            return "intune", f"The property '{name}' must be base64-encoded binary content."
    return None
