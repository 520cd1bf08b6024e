"""The Jamf emulator's model: stored configuration profiles, Classic API XML checks and error pages.

How the payloads are rewritten and checked: :mod:`cavra.emulators.jamf.payloads`; the Jamf Cloud cluster:
:mod:`cavra.emulators.jamf.cluster`.
"""

from __future__ import annotations

import html
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from aiohttp import web

from cavra.emulators.framework import EmulatorHub, json_response
from cavra.emulators.jamf.cluster import Cluster
from cavra.emulators.jamf.payloads import PayloadRefused, accept


@dataclass
class Profile:
    """A stored profile. ``payloads`` is the property list as Jamf rewrote it; ``instances`` lists every
    top-level (PayloadUUID, PayloadIdentifier) it was stored under: each one beyond the first is a ghost
    copy installed on the Macs in scope (see :mod:`cavra.emulators.jamf.payloads`)."""

    id: int
    name: str
    element: ET.Element
    payloads: str = ""
    payload_uuid: str = ""
    payload_identifier: str = ""
    instances: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ghost_copies(self) -> int:
        """How many stale copies of this profile the Macs keep besides the current one."""
        return max(0, len(self.instances) - 1)


@dataclass
class JamfState:
    """Configuration profiles by id (the database), the cluster's nodes, and the requests in flight."""

    profiles: dict[int, Profile] = field(default_factory=dict)
    next_id: int = 1
    in_flight: int = 0
    cluster: Cluster = field(default_factory=Cluster)

    def clear(self) -> None:
        self.profiles.clear()
        self.next_id = 1
        self.in_flight = 0
        self.cluster.configure(self.cluster.size, self.cluster.refresh, self.cluster.cookie_name)

    def by_name(self, name: str, view: dict[int, Profile] | None = None) -> Profile | None:
        found = self.profiles if view is None else view
        return next((p for p in found.values() if p.name == name), None)


_STATES: WeakKeyDictionary[EmulatorHub, JamfState] = WeakKeyDictionary()


def state(hub: EmulatorHub) -> JamfState:
    """The Jamf emulator's state on this hub."""
    found = _STATES.get(hub)
    if found is None:
        found = JamfState()
        _STATES[hub] = found
    return found


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    409: "Conflict",
    415: "Unsupported Media Type",
}


def classic_error(status: int, message: str) -> web.Response:
    """A Classic API error page (HTML, the message in ``<p>Error: …</p>``)."""
    title = _TITLES.get(status, "Error")
    page = (
        '<html>\n<head>\n   <title>Status page</title>\n</head>\n<body style="font-family:sans-serif">\n'
        f'<p style="font-size:1.2em;font-weight:bold;margin:1em 0px">{title}</p>\n'
        f"<p>Error: {html.escape(message)}</p>\n"
        '<p>You can get technical details <a href="http://www.w3.org/Protocols/rfc2616/rfc2616-sec10.html">'
        "here</a>.<br>\n</body>\n</html>\n"
    )
    return web.Response(status=status, text=page, content_type="text/html")


def xml_answer(element: ET.Element, status: int = 200) -> web.Response:
    text = '<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(element, encoding="unicode")
    return web.Response(status=status, text=text, content_type="text/xml")


def id_answer(profile_id: int) -> web.Response:
    root = ET.Element("os_x_configuration_profile")
    ET.SubElement(root, "id").text = str(profile_id)
    return xml_answer(root, 201)


def api_error(status: int, code: str, description: str) -> web.Response:
    return json_response(
        {
            "httpStatus": status,
            "errors": [{"code": code, "description": description, "id": "0", "field": None}],
        },
        status=status,
    )


def read_profile(raw: bytes) -> tuple[ET.Element, dict[str, Any] | None]:
    """The profile element and its payloads as Jamf keeps them, or :class:`PayloadRefused`."""
    try:
        root = ET.fromstring(raw)  # noqa: S314 - loopback emulator parsing its own test traffic
    except ET.ParseError as exc:
        raise PayloadRefused(400, f"Unable to parse XML: {exc}") from None
    if root.tag != "os_x_configuration_profile":
        expected = "expected os_x_configuration_profile"
        raise PayloadRefused(400, f"Problem with element: {expected}, got {root.tag}")
    name = root.findtext("general/name")
    if name is None or not name.strip():
        raise PayloadRefused(400, "Name is required")
    payloads = root.findtext("general/payloads")
    return root, (accept(payloads) if payloads else None)


def parse_profile(raw: bytes) -> tuple[ET.Element | None, str | None]:
    """The profile element, or the Classic API's error message."""
    try:
        root, _ = read_profile(raw)
    except PayloadRefused as exc:
        return None, exc.message
    return root, None


def stored_profile(profile: Profile) -> ET.Element:
    """The full object as Jamf answers it: the sent fields plus id, uuid and defaults."""
    root = ET.Element("os_x_configuration_profile")
    sent = profile.element
    general = ET.SubElement(root, "general")
    ET.SubElement(general, "id").text = str(profile.id)
    ET.SubElement(general, "name").text = profile.name
    ET.SubElement(general, "description").text = sent.findtext("general/description") or ""
    site = ET.SubElement(general, "site")
    ET.SubElement(site, "id").text = sent.findtext("general/site/id") or "-1"
    ET.SubElement(site, "name").text = sent.findtext("general/site/name") or "None"
    category = ET.SubElement(general, "category")
    ET.SubElement(category, "id").text = "-1"
    ET.SubElement(category, "name").text = "No category assigned"
    ET.SubElement(general, "distribution_method").text = (
        sent.findtext("general/distribution_method") or "Install Automatically"
    )
    ET.SubElement(general, "user_removable").text = "false"
    ET.SubElement(general, "level").text = sent.findtext("general/level") or "System"
    ET.SubElement(general, "uuid").text = (
        profile.payload_uuid or str(uuid.uuid5(uuid.NAMESPACE_URL, f"jamf-profile-{profile.id}")).upper()
    )
    ET.SubElement(general, "redeploy_on_update").text = "Newly Assigned"
    ET.SubElement(general, "payloads").text = profile.payloads
    scope = sent.find("scope")
    if scope is not None:
        root.append(scope)
    else:
        scope = ET.SubElement(root, "scope")
        ET.SubElement(scope, "all_computers").text = "false"
    return root
