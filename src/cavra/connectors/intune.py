"""Microsoft Intune (Graph): publish the endpoint export as a macOS custom configuration, assign, verify.

Why ``macOSCustomConfiguration`` (``/v1.0/deviceManagement/deviceConfigurations``) rather than a
``deviceShellScript``: the export is configuration, not code; the custom configuration carries the same
``.mobileconfig`` that Jamf receives (base64 in ``payload``), it lives in Graph's stable ``v1.0`` (shell
scripts are beta-only), its ``/assign`` body is documented, and its payload can be read back for
verification. The profile identifiers inside are derived from the export id, so a republish replaces the
profile on devices.

Flow (each line one recorded attempt):

1. ``token``: Entra ID client credentials (``{authority_url}/{tenant_id}/oauth2/v2.0/token``, scope
   ``https://graph.microsoft.com/.default``), unless a cached token is still valid;
2. ``search``: ``GET …/deviceConfigurations?$filter=displayName eq 'CAVRA <export_id>'``. The names that
   come back are checked here, as the ServiceNow connector checks ``correlation_id``: Graph endpoints may
   ignore a ``$filter`` they do not support and return every object, and updating the oldest object
   returned would overwrite somebody else's configuration. Only objects named exactly ``CAVRA <export_id>``
   count; when a page holds none of them and Graph links a next page (``@odata.nextLink``, on the same
   host), that page is read too (at most ``MAX_SEARCH_PAGES``);
3. ``create`` (``POST``, 201) or ``update`` (``PATCH …/{id}``) of the object, upserted by ``displayName``;
4. ``assign``: ``POST …/{id}/assign`` to the configured ``group_id`` (this replaces the object's assignments);
5. ``verify``: ``GET …/{id}?$expand=assignments``: the configuration inside the payload read back must have
   the digest of the one sent, and the group must be among the assignments. ``Delivered.proof`` says so.

A 401 on steps 2-5 fetches a new token and runs the step again, once. Graph's 429 (Intune allows 100 writes
per 20 s per application) is retried after its ``Retry-After``, as are 503 and 504. Intune's error
``message`` is often itself a JSON string (``{"_version": 3, "Message": "… - Operation ID …"}``): its
``Message`` is what the delivery's reason quotes.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar
from urllib.parse import urlsplit

from cavra.connectors.auth import ClientCredentials, entra_token_url
from cavra.connectors.base import (
    ConnectorSettings,
    Context,
    Delivered,
    Next,
    PreparedRequest,
    Reject,
    Response,
    Verdict,
)
from cavra.connectors.endpoint.export import (
    EndpointExport,
    configuration_digest,
    configuration_from_mobileconfig,
    parse_export,
)
from cavra.connectors.flow import (
    FlowState,
    after_token,
    api_request,
    bearer,
    failure_verdict,
    fetch_token,
    path_segment,
    unauthorized,
)
from cavra.connectors.graphapi import filter_query, graph_error, searched_name
from cavra.connectors.spec import ENDPOINT_PUBLICATION, Described, ProviderSpec
from cavra.errors import ConfigError
from cavra.secretforms import clip
from cavra.secrets import Secret

DEFAULT_GRAPH = "https://graph.microsoft.com"
ODATA_TYPE = "#microsoft.graph.macOSCustomConfiguration"
COLLECTION = "/v1.0/deviceManagement/deviceConfigurations"
#: the most list pages one search reads when the service ignores the filter
MAX_SEARCH_PAGES = 20
#: national clouds: Graph host -> token scope
_SOVEREIGN = {
    "graph.microsoft.us": "https://graph.microsoft.us/.default",
    "dod-graph.microsoft.us": "https://dod-graph.microsoft.us/.default",
    "microsoftgraph.chinacloudapi.cn": "https://microsoftgraph.chinacloudapi.cn/.default",
}


@dataclass(frozen=True)
class IntuneFlow(FlowState):
    """The flow, and during the search the next page Graph linked (``@odata.nextLink``)."""

    next_link: str | None = None
    pages: int = 0
    #: the displayName searched for (kept for the linked pages, whose URL is Graph's)
    name: str = ""


class IntuneSettings(ConnectorSettings):
    """Graph ``url``, ``tenant_id``, ``client_id``, ``client_secret``, ``authority_url``, ``group_id``."""

    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: Secret | None = None
    authority_url: str | None = None
    group_id: str | None = None


def graph_base(settings: IntuneSettings) -> str:
    return (settings.url.reveal() if settings.url is not None else DEFAULT_GRAPH).rstrip("/")


def scope_for(settings: IntuneSettings) -> str:
    host = (urlsplit(graph_base(settings)).hostname or "").lower()
    return _SOVEREIGN.get(host, "https://graph.microsoft.com/.default")


def credentials(settings: IntuneSettings) -> ClientCredentials:
    for name in ("tenant_id", "client_id"):
        if not getattr(settings, name):
            raise ConfigError(
                f"intune: {name} is required (the Entra ID application that holds "
                "DeviceManagementConfiguration.ReadWrite.All)"
            )
    if settings.client_secret is None:
        raise ConfigError("intune: client_secret is required (use client_secret_env)")
    return ClientCredentials(
        token_url=entra_token_url(settings.authority_url, str(settings.tenant_id)),
        client_id=str(settings.client_id),
        client_secret=settings.client_secret,
        scope=scope_for(settings),
    )


def configuration_body(export: EndpointExport) -> dict[str, Any]:
    """The ``macOSCustomConfiguration`` written on create and update."""
    return {
        "@odata.type": ODATA_TYPE,
        "displayName": export.profile_name,
        "description": export.description(),
        "payloadName": "CAVRA governed runtime configuration",
        "payloadFileName": f"cavra-{export.export_id}.mobileconfig",
        "payload": base64.b64encode(export.mobileconfig()).decode("ascii"),
    }


def assignment_body(group_id: str) -> dict[str, Any]:
    target = {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": group_id}
    return {
        "assignments": [{"@odata.type": "#microsoft.graph.deviceConfigurationAssignment", "target": target}]
    }


def payload_configuration(item: Mapping[str, Any]) -> dict[str, Any] | None:
    payload = item.get("payload")
    if not isinstance(payload, str):
        return None
    try:
        return configuration_from_mobileconfig(base64.b64decode(payload, validate=True))
    except (binascii.Error, ValueError):
        return None


class IntuneConnector(Described):
    """Entra ID token + Graph deviceConfigurations upsert by displayName, group assignment, read back."""

    settings_model: ClassVar[type[ConnectorSettings]] = IntuneSettings

    def prepare(
        self, event: Mapping[str, Any], settings: IntuneSettings, ctx: Context, state: Any
    ) -> PreparedRequest:
        export = parse_export(event, self.provider)
        if not settings.group_id:
            raise ConfigError(
                "intune: group_id is required (the Entra ID group the configuration is assigned to)"
            )
        creds = credentials(settings)
        flow = state if isinstance(state, FlowState) else IntuneFlow(step="search")
        token = bearer(flow, ctx, creds)
        if token is None:
            return fetch_token(creds)
        base = graph_base(settings) + COLLECTION
        accept: dict[str, str | Secret] = {**settings.headers, "Accept": "application/json"}
        send = {**accept, "Content-Type": "application/json"}
        item = f"{base}/{path_segment(str(flow.remote_id))}"

        def request(method: str, url: str, body: dict[str, Any] | None = None) -> PreparedRequest:
            data = b"" if body is None else json.dumps(body).encode("utf-8")
            headers = accept if body is None else send
            return api_request(
                method, url, step=flow.step, token=token, source="intune:token", headers=headers, body=data
            )

        if flow.step == "search":
            next_link = flow.next_link if isinstance(flow, IntuneFlow) else None
            return request("GET", next_link or f"{base}?{filter_query(export.profile_name)}")
        if flow.step == "create":
            return request("POST", base, configuration_body(export))
        if flow.step == "update":
            return request("PATCH", item, configuration_body(export))
        if flow.step == "assign":
            return request("POST", f"{item}/assign", assignment_body(settings.group_id))
        return request("GET", f"{item}?$expand=assignments")

    def interpret(
        self, request: PreparedRequest, response: Response, settings: IntuneSettings, ctx: Context, state: Any
    ) -> Verdict:
        flow = state if isinstance(state, FlowState) else IntuneFlow(step="search")
        if request.step == "token":
            return after_token(response, flow, credentials(settings), "Entra ID OAuth endpoint")
        label = f"Graph {request.step}"
        if response.status == 401:
            return unauthorized(flow, label, response)
        if response.status == 403:
            return Reject(
                f"{label}: {graph_error(response)} (the application needs the "
                "DeviceManagementConfiguration.ReadWrite.All application permission, admin-consented)"
            )
        if request.step == "search":
            name = flow.name if isinstance(flow, IntuneFlow) and flow.name else searched_name(request.url)
            if name is None:
                return Reject(f"{label}: the search request carries no displayName filter")
            return _after_search(response, flow, label, name, graph_base(settings))
        if request.step in ("create", "update"):
            return _after_write(request, response, flow, label)
        if request.step == "assign":
            if 200 <= response.status < 300:
                return Next(flow.go("verify"))
            return _failure(response, label)
        return _after_verify(response, flow, label, str(settings.group_id))


def _after_search(response: Response, flow: FlowState, label: str, name: str, base: str) -> Verdict:
    if response.status != 200:
        return _failure(response, label)
    data = response.json_or_none()
    items = data.get("value") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return Reject(f"{label}: HTTP 200 without a value list")
    # the service may have ignored the filter: only objects with exactly our name count
    found = [
        i
        for i in items
        if isinstance(i, dict) and isinstance(i.get("id"), str) and i.get("displayName") == name
    ]
    if not found:
        link = data.get("@odata.nextLink") if isinstance(data, dict) else None
        if isinstance(link, str) and link:
            return _next_page(link, flow, label, base, name)
        return Next(_leave_search(flow, "create"))
    mine = [i for i in found if i.get("@odata.type") in (None, ODATA_TYPE)]
    if not mine:
        return Reject(
            f"{label}: a device configuration with this displayName exists with another type "
            f"({clip(str(found[0].get('@odata.type')), 80)}); rename or remove it"
        )
    oldest = sorted(mine, key=lambda i: str(i.get("createdDateTime")))[0]
    return Next(_leave_search(flow, "update", remote_id=str(oldest["id"])))


def _next_page(link: str, flow: FlowState, label: str, base: str, name: str) -> Verdict:
    """Read the page Graph linked, on the same host only (the token must not travel elsewhere)."""
    pages = flow.pages + 1 if isinstance(flow, IntuneFlow) else 1
    here, there = urlsplit(base), urlsplit(link)
    if (there.scheme, there.netloc) != (here.scheme, here.netloc):
        return Reject(f"{label}: @odata.nextLink points to another host; not followed")
    if pages >= MAX_SEARCH_PAGES:
        return Reject(
            f"{label}: no object named as ours in {pages} pages and more are linked: the service seems to "
            "ignore the $filter; not creating a possible duplicate"
        )
    current = flow if isinstance(flow, IntuneFlow) else IntuneFlow(step="search", token=flow.token)
    return Next(replace(current, next_link=link, pages=pages, name=name))


def _leave_search(flow: FlowState, step: str, **changes: Any) -> FlowState:
    if isinstance(flow, IntuneFlow):
        return replace(flow, step=step, next_link=None, pages=0, name="", **changes)
    return flow.go(step, **changes)


def _after_write(request: PreparedRequest, response: Response, flow: FlowState, label: str) -> Verdict:
    if response.status == 404 and request.step == "update" and not flow.rerouted:
        return Next(flow.go("create", rerouted=True, remote_id=None))
    if not 200 <= response.status < 300:
        return _failure(response, label)
    sent = json.loads(request.body)
    config = payload_configuration(sent)
    digest = None if config is None else configuration_digest(config)
    if request.step == "create":
        data = response.json_or_none()
        new_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(new_id, str) or not new_id:
            return Reject(f"{label}: HTTP {response.status} without the new object's id")
        return Next(flow.go("assign", remote_id=new_id, action="created", digest=digest))
    return Next(flow.go("assign", action="updated", digest=digest))


def _after_verify(response: Response, flow: FlowState, label: str, group_id: str) -> Verdict:
    if response.status != 200:
        return _failure(response, label)
    item = response.json_or_none()
    if not isinstance(item, dict):
        return Reject(f"{label}: the object read back is not JSON")
    config = payload_configuration(item)
    if config is None:
        return Reject(
            f"{label}: configuration {flow.remote_id} read back holds no CAVRA configuration payload"
        )
    read_digest = configuration_digest(config)
    if read_digest != flow.digest:
        return Reject(
            f"{label}: configuration {flow.remote_id} read back differs from what was sent "
            f"(sha256:{read_digest[:16]}…, sent sha256:{(flow.digest or '?')[:16]}…)"
        )
    groups = {
        str((a.get("target") or {}).get("groupId"))
        for a in item.get("assignments") or []
        if isinstance(a, dict)
    }
    if group_id not in groups:
        return Reject(
            f"{label}: configuration {flow.remote_id} is not assigned to group {group_id} when read back"
        )
    name = str(item.get("displayName", ""))
    return Delivered(
        remote_id=flow.remote_id,
        proof=(
            f"read back: Intune deviceConfiguration {flow.remote_id} ({name}) holds the published "
            f"configuration (sha256:{read_digest}) and is assigned to group {group_id}"
        ),
        detail={
            "configuration_id": flow.remote_id or "",
            "display_name": name,
            "action": flow.action or "",
            "group_id": group_id,
            "configuration_sha256": read_digest,
        },
    )


def _failure(response: Response, label: str) -> Verdict:
    return failure_verdict(response, label, graph_error(response))


SPEC = ProviderSpec(
    name="intune",
    category="endpoint",
    connector=IntuneConnector,
    emulator="cavra.emulators.graph",
    needs=("cavra.emulators.entra",),
    rate_limit="4/20",
    takes=(ENDPOINT_PUBLICATION,),
    example={
        "url_env": "INTUNE_GRAPH_URL",
        "tenant_id": "00000000-0000-0000-0000-000000000000",
        "client_id": "33333333-3333-3333-3333-333333333333",
        "client_secret_env": "INTUNE_CLIENT_SECRET",
        "group_id": "44444444-4444-4444-4444-444444444444",
    },
    example_env={
        "INTUNE_GRAPH_URL": "https://graph.microsoft.com",
        "INTUNE_CLIENT_SECRET": "intune-client-secret-0001",
    },
)
