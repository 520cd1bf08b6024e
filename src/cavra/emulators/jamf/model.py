"""The Jamf emulator's model: stored configuration profiles, Classic API XML checks and error pages."""

from __future__ import annotations

import html
import plistlib
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from weakref import WeakKeyDictionary

from aiohttp import web

from cavra.emulators.framework import EmulatorHub, json_response


@dataclass
class Profile:
    id: int
    name: str
    element: ET.Element


@dataclass
class JamfState:
    """Configuration profiles by id, and the requests in flight."""

    profiles: dict[int, Profile] = field(default_factory=dict)
    next_id: int = 1
    in_flight: int = 0

    def clear(self) -> None:
        self.profiles.clear()
        self.next_id = 1
        self.in_flight = 0

    def by_name(self, name: str) -> Profile | None:
        return next((p for p in self.profiles.values() if p.name == name), None)


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


def parse_profile(raw: bytes) -> tuple[ET.Element | None, str | None]:
    """The profile element, or the Classic API's error message."""
    try:
        root = ET.fromstring(raw)  # noqa: S314 - loopback emulator parsing its own test traffic
    except ET.ParseError as exc:
        return None, f"Unable to parse XML: {exc}"
    if root.tag != "os_x_configuration_profile":
        return None, f"Problem with element: expected os_x_configuration_profile, got {root.tag}"
    name = root.findtext("general/name")
    if name is None or not name.strip():
        return None, "Name is required"
    payloads = root.findtext("general/payloads")
    if payloads:
        try:
            plistlib.loads(payloads.encode("utf-8"))
        except Exception:  # expat, plistlib and value errors alike: the payload is not a property list
            return None, "Unable to parse the configuration profile payloads"
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
    ET.SubElement(general, "uuid").text = str(
        uuid.uuid5(uuid.NAMESPACE_URL, f"jamf-profile-{profile.id}")
    ).upper()
    ET.SubElement(general, "redeploy_on_update").text = "Newly Assigned"
    ET.SubElement(general, "payloads").text = sent.findtext("general/payloads") or ""
    scope = sent.find("scope")
    if scope is not None:
        root.append(scope)
    else:
        scope = ET.SubElement(root, "scope")
        ET.SubElement(scope, "all_computers").text = "false"
    return root
