"""Jamf Pro: publish the endpoint export as a macOS configuration profile, upserted by name, and verify it.

Why a configuration profile (Classic API ``osxconfigurationprofiles``) rather than a script plus a policy:
the export is *configuration*, not code to run; a profile is one object with a unique name (so an upsert
by name is exact and a republish replaces it in place, on Jamf and on the Macs, because an update carries
back the identifiers Jamf gave the profile), it is the way Jamf's own tooling uploads configuration, it can
be read back whole for verification, and it never executes anything on endpoints. A script needs a second
object (a policy) to reach a device, and running code is a larger change than delivering settings.

Flow (each line one recorded attempt):

1. ``token``: ``POST {url}{token_path}`` (form ``grant_type=client_credentials``; default path
   ``/api/v1/oauth/token``), unless a cached token is still valid (cached until shortly before
   ``expires_in``);
2. ``lookup``: ``GET /JSSResource/osxconfigurationprofiles/name/{name}``: 200 -> update (keeping the stored
   top-level PayloadUUID / PayloadIdentifier), 404 -> create;
3. ``create``: ``POST …/id/0`` (201 with ``<id>``) or ``update``: ``PUT …/id/{id}``; a 409 on create (the
   name appeared meanwhile) looks the profile up again, once;
4. ``verify``: ``GET …/id/{id}``; the governed configuration inside the stored payload is compared with the
   one sent (:mod:`.profile`), and after an update the stored identity must still be the one carried back.
   ``Delivered.proof`` says so.

Every step carries the cookies Jamf Cloud's load balancer set earlier in the same delivery, so the
read-back reaches the web app that took the write (:mod:`.session`). A 401 on steps 2-4 fetches a new token
and runs the step again, once. The profile's scope is left to the Jamf administrator: updates do not send
``<scope>``, so a republish keeps it.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

from pydantic import Field, field_validator

from cavra.connectors.auth import ClientCredentials
from cavra.connectors.base import (
    ConnectorSettings,
    Context,
    Delivered,
    Next,
    PreparedRequest,
    Reject,
    Response,
    Retry,
    Verdict,
)
from cavra.connectors.endpoint.export import (
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
from cavra.connectors.jamf.profile import (
    Identity,
    governed_digest,
    profile_xml,
    sent_configuration,
    stored_identity,
)
from cavra.connectors.jamf.session import Cookies, remember, with_cookies
from cavra.connectors.spec import ENDPOINT_PUBLICATION, Described, ProviderSpec
from cavra.errors import ConfigError
from cavra.secretforms import clip, clip_bytes
from cavra.secrets import Secret

__all__ = ["JamfConnector", "JamfFlow", "JamfSettings", "profile_xml"]

PROFILES = "/JSSResource/osxconfigurationprofiles"
_CLASSIC_ERROR = re.compile(r"<p>Error:\s*(.*?)</p>", re.S)


#: the API-client token endpoint current Jamf clients use; ``/api/oauth/token`` is reported deprecated
TOKEN_PATH = "/api/v1/oauth/token"
LEGACY_TOKEN_PATH = "/api/oauth/token"


class JamfSettings(ConnectorSettings):
    """``url`` (Jamf Pro base), ``client_id``, ``client_secret`` and ``token_path`` (``/api/v1/oauth/token``;
    ``/api/oauth/token`` for a server that predates the versioned path)."""

    client_id: str | None = None
    client_secret: Secret | None = None
    token_path: str = TOKEN_PATH
    #: how long a Jamf Cloud web app may take to see a profile another one stored ("the cluster refresh,
    #: which occurs every minute"): the wait before looking up again a profile a 409 says exists
    cluster_refresh_seconds: float = Field(default=60.0, ge=0, le=300)

    @field_validator("token_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"token_path must be a path starting with '/' (for example {TOKEN_PATH})")
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


@dataclass(frozen=True)
class JamfFlow(FlowState):
    """The flow state plus what Jamf gave this delivery: load-balancer cookies, the stored profile's
    top-level identity (carried back on update), and the governed digest of what was written."""

    cookies: Cookies = ()
    identity: Identity | None = None
    governed_digest: str | None = None

    def go(self, step: str, **changes: Any) -> JamfFlow:
        return replace(self, step=step, **changes)


def _flow(state: Any) -> JamfFlow:
    if isinstance(state, JamfFlow):
        return state
    if isinstance(state, FlowState):
        return JamfFlow(**{f.name: getattr(state, f.name) for f in fields(FlowState)})
    return JamfFlow(step="lookup")


class JamfConnector(Described):
    """Jamf Pro API client credentials + Classic API configuration profile, upserted by name, read back."""

    settings_model: ClassVar[type[ConnectorSettings]] = JamfSettings

    def prepare(
        self, event: Mapping[str, Any], settings: JamfSettings, ctx: Context, state: Any
    ) -> PreparedRequest:
        flow = _flow(state)
        return with_cookies(self._request(event, settings, ctx, flow), flow.cookies)

    def _request(
        self, event: Mapping[str, Any], settings: JamfSettings, ctx: Context, flow: JamfFlow
    ) -> PreparedRequest:
        export = parse_export(event, self.provider)
        creds = credentials(settings)
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
            identity = flow.identity if flow.step == "update" else None
            return api_request(
                "POST" if flow.step == "create" else "PUT",
                f"{base}/id/{target}",
                step=flow.step,
                token=token,
                source="jamf:token",
                headers={**xml_headers, "Content-Type": "text/xml; charset=utf-8"},
                body=profile_xml(export, identity),
            )
        url = f"{base}/id/{path_segment(str(flow.remote_id))}"
        return api_request("GET", url, step="verify", token=token, source="jamf:token", headers=xml_headers)

    def interpret(
        self, request: PreparedRequest, response: Response, settings: JamfSettings, ctx: Context, state: Any
    ) -> Verdict:
        flow = _flow(state)
        flow = flow.go(flow.step, cookies=remember(flow.cookies, response))
        if request.step == "token":
            if response.status == 404:
                return Reject(_token_path_hint(settings))
            return after_token(response, flow, credentials(settings), "Jamf OAuth endpoint")
        label = f"Jamf {request.step}"
        if response.status == 401:
            return unauthorized(flow, label, response)
        if request.step == "lookup":
            return _after_lookup(response, flow, label, settings.cluster_refresh_seconds)
        if request.step in ("create", "update"):
            return _after_write(request, response, flow, label)
        return _after_verify(response, flow, label)


def _token_path_hint(settings: JamfSettings) -> str:
    other = LEGACY_TOKEN_PATH if settings.token_path == TOKEN_PATH else TOKEN_PATH
    return (
        f"Jamf OAuth endpoint: HTTP 404: this Jamf Pro server does not serve {settings.token_path}; "
        f"set token_path to {other}"
    )


def _after_lookup(response: Response, flow: JamfFlow, label: str, refresh: float) -> Verdict:
    if response.status == 404 and flow.rerouted:
        # the create said the name exists, this web app does not show it: a Jamf Cloud node that has not
        # refreshed since another one stored the profile; look again once it has
        return Retry(
            f"{label}: Jamf answered 409 Duplicate name but this Jamf Cloud web app does not show the "
            "profile yet (web apps refresh about once a minute)",
            after=refresh,
        )
    if response.status == 404:
        return Next(flow.go("create", identity=None))
    if response.status != 200:
        return _failure(response, label)
    root = parse_xml(response)
    profile_id = None if root is None else (root.findtext("general/id") or root.findtext("id"))
    if root is None or not profile_id or not profile_id.strip().isdigit():
        return Reject(f"{label}: HTTP 200 without a profile id in the answer")
    # the update carries back the identity Jamf gave the profile, or the Macs install a second copy
    return Next(flow.go("update", remote_id=profile_id.strip(), identity=stored_identity(root)))


def _after_write(request: PreparedRequest, response: Response, flow: JamfFlow, label: str) -> Verdict:
    step = request.step
    if response.status == 409 and step == "create" and not flow.rerouted:
        # the name appeared since the look-up: look the profile up again and update it instead
        return Next(flow.go("lookup", rerouted=True))
    if response.status == 404 and step == "update" and not flow.rerouted:
        # the profile was deleted since the look-up: create it
        return Next(flow.go("create", rerouted=True, remote_id=None, identity=None))
    if not 200 <= response.status < 300:
        return _failure(response, label)
    root = parse_xml(response)
    profile_id = None if root is None else root.findtext("id")
    if step == "update":
        profile_id = profile_id or flow.remote_id
    if not profile_id or not profile_id.strip().isdigit():
        return Reject(f"{label}: HTTP {response.status} without the profile id in the answer")
    config = sent_configuration(request.body)
    digest = None if config is None else configuration_digest(config)
    governed = None if config is None else governed_digest(config)
    action = "created" if step == "create" else "updated"
    return Next(
        flow.go(
            "verify", remote_id=profile_id.strip(), action=action, digest=digest, governed_digest=governed
        )
    )


def _after_verify(response: Response, flow: JamfFlow, label: str) -> Verdict:
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
    encoded = read_digest != flow.digest and governed_digest(found) == flow.governed_digest
    if read_digest != flow.digest and not encoded:
        return Reject(
            f"{label}: profile {flow.remote_id} read back differs from what was sent "
            f"(configuration sha256:{read_digest[:16]}…, sent sha256:{(flow.digest or '?')[:16]}…)"
        )
    if flow.action == "updated" and flow.identity is not None and stored_identity(root) != flow.identity:
        return Reject(
            f"{label}: profile {flow.remote_id} no longer has the PayloadUUID/PayloadIdentifier it was "
            "updated with: Macs in scope may now hold a second copy of it"
        )
    return _delivered(root, flow, read_digest, encoded)


def _delivered(root: ET.Element, flow: JamfFlow, read_digest: str, encoded: bool) -> Delivered:
    name = root.findtext("general/name") or ""
    sent = flow.digest or read_digest
    proof = (
        f"read back: Jamf configuration profile {flow.remote_id} ({name}) holds the published "
        f"configuration (sha256:{sent})"
    )
    detail = {
        "profile_id": flow.remote_id or "",
        "profile_name": name,
        "action": flow.action or "",
        "configuration_sha256": sent,
    }
    if encoded:
        proof += (
            "; Jamf stored its text values with an extra entity-encoding layer (e.g. & as &amp;), "
            "so Macs read them encoded"
        )
        detail["stored_configuration_sha256"] = read_digest
        detail["stored_entity_encoded"] = "true"
    return Delivered(remote_id=flow.remote_id, proof=proof, detail=detail)


def _failure(response: Response, label: str) -> Verdict:
    return failure_verdict(response, label, classic_error(response))


SPEC = ProviderSpec(
    name="jamf",
    category="endpoint",
    connector=JamfConnector,
    emulator="cavra.emulators.jamf",
    takes=(ENDPOINT_PUBLICATION,),
    example={
        "url_env": "JAMF_URL",
        "client_id": "22222222-2222-2222-2222-222222222222",
        "client_secret_env": "JAMF_CLIENT_SECRET",
    },
    example_env={
        "JAMF_URL": "https://example.jamfcloud.com",
        "JAMF_CLIENT_SECRET": "jamf-client-secret-0001",
    },
)
