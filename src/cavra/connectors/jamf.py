"""Jamf Pro: publish the endpoint export as a macOS configuration profile, upserted by name, and verify it.

Why a configuration profile (Classic API ``osxconfigurationprofiles``) rather than a script plus a policy:
the export is *configuration*, not code to run; a profile is one object with a unique name (so an upsert
by name is exact and a republish replaces it in place, on Jamf and on the Macs, whose profile identifiers
are derived from the export id), it is the way Jamf's own tooling uploads configuration, it can be read
back whole for verification, and it never executes anything on endpoints. A script needs a second object
(a policy) to reach a device, and running code is a larger change than delivering settings.

Flow (each line one recorded attempt):

1. ``token``: ``POST {url}{token_path}`` (form ``grant_type=client_credentials``), unless a cached token is
   still valid (it is cached until shortly before ``expires_in``);
2. ``lookup``: ``GET /JSSResource/osxconfigurationprofiles/name/{name}``: 200 -> update, 404 -> create;
3. ``create``: ``POST …/id/0`` (201 with ``<id>``) or ``update``: ``PUT …/id/{id}``; a 409 on create (the
   name appeared meanwhile) looks the profile up again, once;
4. ``verify``: ``GET …/id/{id}``; the configuration inside the profile's payload is compared, digest to
   digest, with the one sent. ``Delivered.proof`` says so.

A 401 on steps 2-4 fetches a new token and runs the step again, once. The profile's scope is left to the
Jamf administrator: updates do not send ``<scope>``, so a republish keeps it.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import field_validator

from cavra.connectors.auth import ClientCredentials
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
from cavra.errors import ConfigError
from cavra.secretforms import clip, clip_bytes
from cavra.secrets import Secret

PROFILES = "/JSSResource/osxconfigurationprofiles"
_CLASSIC_ERROR = re.compile(r"<p>Error:\s*(.*?)</p>", re.S)


class JamfSettings(ConnectorSettings):
    """``url`` (Jamf Pro base), ``client_id``, ``client_secret`` and ``token_path`` (``/api/oauth/token``)."""

    client_id: str | None = None
    client_secret: Secret | None = None
    token_path: str = "/api/oauth/token"

    @field_validator("token_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("token_path must be a path starting with '/' (for example /api/oauth/token)")
        return value


def base_url(settings: JamfSettings) -> str:
    if settings.url is None:
        raise ConfigError("jamf: url is required (the Jamf Pro base URL)")
    return settings.url.reveal().rstrip("/")


def credentials(settings: JamfSettings) -> ClientCredentials:
    if not settings.client_id:
        raise ConfigError("jamf: client_id is required (a Jamf Pro API client)")
    if settings.client_secret is None:
        raise ConfigError("jamf: client_secret is required (use client_secret_env)")
    return ClientCredentials(
        token_url=base_url(settings) + settings.token_path,
        client_id=settings.client_id,
        client_secret=settings.client_secret,
    )


def profile_xml(export: EndpointExport) -> bytes:
    """The Classic API body: name, description and the XML-escaped .mobileconfig in ``payloads``."""
    root = ET.Element("os_x_configuration_profile")
    general = ET.SubElement(root, "general")
    ET.SubElement(general, "name").text = export.profile_name
    ET.SubElement(general, "description").text = export.description()
    ET.SubElement(general, "distribution_method").text = "Install Automatically"
    ET.SubElement(general, "level").text = "System"
    ET.SubElement(general, "redeploy_on_update").text = "Newly Assigned"
    ET.SubElement(general, "payloads").text = export.mobileconfig().decode("utf-8")
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>' + body


def classic_error(response: Response) -> str:
    """``HTTP 409: Duplicate name`` from a Classic API HTML error page."""
    text = clip_bytes(response.body, 4096)
    found = _CLASSIC_ERROR.search(text)
    detail = f": {clip(found.group(1).strip(), 200)}" if found else ""
    return f"HTTP {response.status}{detail}"


def parse_xml(response: Response) -> ET.Element | None:
    try:
        # Jamf's own answer over TLS; the stdlib parser resolves no external entities.
        return ET.fromstring(response.body)  # noqa: S314
    except ET.ParseError:
        return None


class JamfConnector:
    """Jamf Pro API client credentials + Classic API configuration profile, upserted by name, read back."""

    provider: ClassVar[str] = "jamf"
    category: ClassVar[str] = "endpoint"
    settings_model: ClassVar[type[ConnectorSettings]] = JamfSettings
    secret_url_path: ClassVar[bool] = False

    def prepare(
        self, event: Mapping[str, Any], settings: JamfSettings, ctx: Context, state: Any
    ) -> PreparedRequest:
        export = parse_export(event, self.provider)
        creds = credentials(settings)
        flow = state if isinstance(state, FlowState) else FlowState(step="lookup")
        token = bearer(flow, ctx, creds)
        if token is None:
            return fetch_token(creds)
        base = base_url(settings) + PROFILES
        xml_headers: dict[str, str | Secret] = {**settings.headers, "Accept": "application/xml"}
        if flow.step == "lookup":
            url = f"{base}/name/{path_segment(export.profile_name)}"
            return api_request(
                "GET", url, step="lookup", token=token, source="jamf:token", headers=xml_headers
            )
        if flow.step in ("create", "update"):
            target = "0" if flow.step == "create" else path_segment(str(flow.remote_id))
            return api_request(
                "POST" if flow.step == "create" else "PUT",
                f"{base}/id/{target}",
                step=flow.step,
                token=token,
                source="jamf:token",
                headers={**xml_headers, "Content-Type": "text/xml; charset=utf-8"},
                body=profile_xml(export),
            )
        url = f"{base}/id/{path_segment(str(flow.remote_id))}"
        return api_request("GET", url, step="verify", token=token, source="jamf:token", headers=xml_headers)

    def interpret(
        self, request: PreparedRequest, response: Response, settings: JamfSettings, ctx: Context, state: Any
    ) -> Verdict:
        flow = state if isinstance(state, FlowState) else FlowState(step="lookup")
        if request.step == "token":
            return after_token(response, flow, credentials(settings), "Jamf OAuth endpoint")
        label = f"Jamf {request.step}"
        if response.status == 401:
            return unauthorized(flow, label)
        if request.step == "lookup":
            return _after_lookup(response, flow, label)
        if request.step in ("create", "update"):
            return _after_write(request, response, flow, label)
        return _after_verify(response, flow, label)


def _after_lookup(response: Response, flow: FlowState, label: str) -> Verdict:
    if response.status == 404:
        return Next(flow.go("create"))
    if response.status != 200:
        return _failure(response, label)
    root = parse_xml(response)
    profile_id = None if root is None else (root.findtext("general/id") or root.findtext("id"))
    if not profile_id or not profile_id.strip().isdigit():
        return Reject(f"{label}: HTTP 200 without a profile id in the answer")
    return Next(flow.go("update", remote_id=profile_id.strip()))


def _after_write(request: PreparedRequest, response: Response, flow: FlowState, label: str) -> Verdict:
    step = request.step
    if response.status == 409 and step == "create" and not flow.rerouted:
        # the name appeared since the look-up: look the profile up again and update it instead
        return Next(flow.go("lookup", rerouted=True))
    if response.status == 404 and step == "update" and not flow.rerouted:
        # the profile was deleted since the look-up: create it
        return Next(flow.go("create", rerouted=True, remote_id=None))
    if not 200 <= response.status < 300:
        return _failure(response, label)
    root = parse_xml(response)
    profile_id = None if root is None else root.findtext("id")
    if step == "update":
        profile_id = profile_id or flow.remote_id
    if not profile_id or not profile_id.strip().isdigit():
        return Reject(f"{label}: HTTP {response.status} without the profile id in the answer")
    sent = ET.fromstring(request.body).findtext("general/payloads") or ""  # noqa: S314 - our own body
    config = configuration_from_mobileconfig(sent.encode("utf-8"))
    digest = None if config is None else configuration_digest(config)
    action = "created" if step == "create" else "updated"
    return Next(flow.go("verify", remote_id=profile_id.strip(), action=action, digest=digest))


def _after_verify(response: Response, flow: FlowState, label: str) -> Verdict:
    if response.status != 200:
        return _failure(response, label)
    root = parse_xml(response)
    if root is None:
        return Reject(f"{label}: profile {flow.remote_id} read back is not XML")
    payloads = root.findtext("general/payloads") or ""
    found = configuration_from_mobileconfig(payloads.encode("utf-8"))
    if found is None:
        return Reject(f"{label}: profile {flow.remote_id} read back holds no CAVRA configuration payload")
    read_digest = configuration_digest(found)
    if read_digest != flow.digest:
        return Reject(
            f"{label}: profile {flow.remote_id} read back differs from what was sent "
            f"(configuration sha256:{read_digest[:16]}…, sent sha256:{(flow.digest or '?')[:16]}…)"
        )
    name = root.findtext("general/name") or ""
    return Delivered(
        remote_id=flow.remote_id,
        proof=(
            f"read back: Jamf configuration profile {flow.remote_id} ({name}) holds the published "
            f"configuration (sha256:{read_digest})"
        ),
        detail={
            "profile_id": flow.remote_id or "",
            "profile_name": name,
            "action": flow.action or "",
            "configuration_sha256": read_digest,
        },
    )


def _failure(response: Response, label: str) -> Verdict:
    return failure_verdict(response, label, classic_error(response))
