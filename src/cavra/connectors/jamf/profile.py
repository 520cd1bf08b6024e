"""The configuration profile body, and how what Jamf stored is compared with what was sent.

Jamf Pro rewrites a profile when it stores it (jamf/terraform-provider-jamfplatform PR 154; deploymenttheory/
terraform-provider-jamfpro issue 539): new top-level and per-payload ``PayloadUUID``, ``PayloadIdentifier``
and ``PayloadDisplayName``, added ``PayloadEnabled`` / ``PayloadRemovalDisallowed`` / ``PayloadOrganization``,
other indentation. So:

* **Update keeps the stored identity.** An update that does not carry back the stored top-level
  ``PayloadUUID`` and ``PayloadIdentifier`` makes every Mac install a second, "ghost" copy of the profile
  (issue 539; PR 154; Jamf-Concepts/jamf-cli issue 129). The look-up reads them from the stored profile and
  the update's ``.mobileconfig`` carries them (:func:`profile_xml` with ``identity``).
* **The payloads travel with one extra entity layer.** The Classic API entity-decodes ``<payloads>`` once
  more after parsing the XML and refuses (409 "Unable to update the database") what then holds a bare
  ``&`` or ``<`` (Jamf-Concepts/jamf-cli PR 310, wire-verified; deploymenttheory/terraform-provider-jamfpro
  PR 1103), so every ``&`` of the property list is sent as ``&amp;``; without ``&``, ``<`` or ``>`` in the
  values the body is unchanged.
* **Read-back compares the governed configuration, never the raw XML**: the ``Configuration`` dictionary of
  the CAVRA payload, by digest, so re-indentation and rewritten identifiers do not matter. For payload types
  other than custom settings Jamf keeps the extra entity layer in the stored values (PR 310, Jamf defect
  PI-827): a value ``R&D`` reads back ``R&amp;D``. :func:`governed` undoes entity layers on both sides, and
  the proof says when the stored text differs only by that encoding.
"""

from __future__ import annotations

import html
import plistlib
import re
import xml.etree.ElementTree as ET
from typing import Any

from cavra.connectors.endpoint.export import (
    EndpointExport,
    configuration_digest,
    configuration_from_mobileconfig,
)

_ENTITY = re.compile(r"&(?:amp|lt|gt|quot|apos|#[0-9]{1,7}|#x[0-9A-Fa-f]{1,6});")
#: entity layers undone, at most, when comparing values
_MAX_LAYERS = 3

Identity = tuple[str, str]


def _decode_once(text: str) -> str:
    return _ENTITY.sub(lambda m: html.unescape(m.group(0)), text)


def _plist(text: str) -> Any:
    try:
        return plistlib.loads(text.encode("utf-8"))
    except Exception:  # expat, plistlib and value errors alike: not a property list
        return None


def mobileconfig(export: EndpointExport, identity: Identity | None = None) -> str:
    """The export's ``.mobileconfig``; with ``identity``, the stored top-level PayloadUUID and
    PayloadIdentifier replace the derived ones (an update of the same profile, not a second one)."""
    data = export.mobileconfig()
    if identity is not None:
        profile = plistlib.loads(data)
        profile["PayloadUUID"], profile["PayloadIdentifier"] = identity
        data = plistlib.dumps(profile, fmt=plistlib.FMT_XML, sort_keys=True)
    return data.decode("utf-8")


def profile_xml(export: EndpointExport, identity: Identity | None = None) -> bytes:
    """The Classic API body: name, description and the .mobileconfig in ``payloads`` (one entity layer
    more than the XML itself needs, which Jamf decodes)."""
    root = ET.Element("os_x_configuration_profile")
    general = ET.SubElement(root, "general")
    ET.SubElement(general, "name").text = export.profile_name
    ET.SubElement(general, "description").text = export.description()
    ET.SubElement(general, "distribution_method").text = "Install Automatically"
    ET.SubElement(general, "level").text = "System"
    ET.SubElement(general, "redeploy_on_update").text = "Newly Assigned"
    ET.SubElement(general, "payloads").text = mobileconfig(export, identity).replace("&", "&amp;")
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>' + body


def stored_identity(root: ET.Element) -> Identity | None:
    """The top-level (PayloadUUID, PayloadIdentifier) of a profile as Jamf answers it, or None."""
    profile = _plist(root.findtext("general/payloads") or "")
    if not isinstance(profile, dict):
        return None
    uid, ident = profile.get("PayloadUUID"), profile.get("PayloadIdentifier")
    if isinstance(uid, str) and uid.strip() and isinstance(ident, str) and ident.strip():
        return uid.strip(), ident.strip()
    return None


def sent_configuration(body: bytes) -> dict[str, Any] | None:
    """The configuration a profile body carries, as Jamf reads it (after its extra entity decode)."""
    try:
        root = ET.fromstring(body)  # noqa: S314 - our own request body
    except ET.ParseError:
        return None
    text = _decode_once(root.findtext("general/payloads") or "")
    return configuration_from_mobileconfig(text.encode("utf-8"))


def governed(value: Any) -> Any:
    """The value with entity layers undone in every string (for comparing what Jamf stored)."""
    if isinstance(value, str):
        for _ in range(_MAX_LAYERS):
            decoded = _decode_once(value)
            if decoded == value:
                break
            value = decoded
        return value
    if isinstance(value, dict):
        return {k: governed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [governed(v) for v in value]
    return value


def governed_digest(config: dict[str, Any]) -> str:
    return configuration_digest(governed(config))
