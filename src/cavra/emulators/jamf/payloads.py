"""How the emulated Jamf Pro checks, stores and rewrites a configuration profile's ``<payloads>``.

What real Jamf Pro does, and where it is documented or reported:

* **It re-derives the profile's identifiers.** Top-level ``PayloadUUID``, ``PayloadIdentifier`` and
  ``PayloadDisplayName`` and the same three keys of every ``PayloadContent`` item are replaced when the
  profile is stored; ``PayloadEnabled``, ``PayloadRemovalDisallowed`` and (when empty) ``PayloadOrganization``
  are added; the property list is re-rendered with other indentation. Sources: jamf/terraform-provider-
  jamfplatform PR 154 ("fields Jamf Pro always re-derives on write: top-level PayloadDisplayName /
  PayloadIdentifier / PayloadUUID plus the same three keys on every PayloadContent[i]"; "server-injected
  defaults (PayloadEnabled, PayloadDescription, PayloadRemovalDisallowed, PayloadOrganization …)");
  deploymenttheory/terraform-provider-jamfpro issue 539 ("the uploaded profile in Jamf has a completely
  different PayloadUUID than what was in the local mobileconfig file"); a profile as Jamf stores it, in
  deploymenttheory/terraform-provider-jamfpro issue 624 (key order, four-space indentation,
  ``<plist version="1">``, ``PayloadIdentifier`` equal to the ``PayloadUUID``).
* **An update that does not carry back the stored top-level PayloadUUID / PayloadIdentifier installs a
  second ("ghost") copy on the Macs**, because macOS keys an installed profile on those identifiers:
  terraform-provider-jamfpro issue 539 ("a second version is being deployed to a device"), jamf/terraform-
  provider-jamfplatform PR 154 ("top-level PayloadUUID/PayloadIdentifier re-injection on Update prevents
  the 'ghost profile' reinstall"), Jamf-Concepts/jamf-cli issue 129 ("ghost profiles — the old profile
  lingers on devices"). The emulator records every distinct top-level identity a profile was stored
  under (:attr:`~cavra.emulators.jamf.model.Profile.instances`): more than one is a ghost copy on every Mac
  in scope.
* **Entities in ``<payloads>``.** The Classic API entity-decodes the submitted payloads once more after
  parsing the XML and answers **409 "Unable to update the database"** when that leaves a bare ``&`` or
  ``<`` (so a property list holding ``&amp;``/``&lt;`` must be sent with one extra entity layer); payload
  types Jamf re-renders (custom settings ``com.apple.ManagedClient.preferences``, notifications) are then
  stored value-correct, every other payload type **verbatim, with the extra entity layer left in its
  values**. Source: Jamf-Concepts/jamf-cli PR 310 ("every clause wire-verified against two Jamf Pro 11.x
  tenants", Jamf defect PI-827), jamf/terraform-provider-jamfplatform PR 305, and deploymenttheory/
  terraform-provider-jamfpro PR 1103 ("I get a 409 when doing a single-escaped POST when plist <string>
  content contains &amp; or &lt;").
"""

from __future__ import annotations

import html
import plistlib
import re
import uuid
from typing import Any

#: payload types Jamf re-renders (stored value-correct); every other type keeps the extra entity layer
RE_RENDERED_TYPES = frozenset({"com.apple.ManagedClient.preferences", "com.apple.notificationsettings"})
DEFAULT_ORGANIZATION = "Emulated Jamf Pro"
ITEM_DISPLAY_NAME = "Custom Settings"
_ENTITY = re.compile(r"&(?:amp|lt|gt|quot|apos|#[0-9]{1,7}|#x[0-9A-Fa-f]{1,6});")
_TOP_ORDER = (
    "PayloadUUID",
    "PayloadType",
    "PayloadOrganization",
    "PayloadIdentifier",
    "PayloadDisplayName",
    "PayloadDescription",
    "PayloadVersion",
    "PayloadEnabled",
    "PayloadRemovalDisallowed",
    "PayloadScope",
)
_ITEM_ORDER = (
    "PayloadDisplayName",
    "PayloadIdentifier",
    "PayloadOrganization",
    "PayloadType",
    "PayloadUUID",
    "PayloadVersion",
    "PayloadEnabled",
)


class PayloadRefused(Exception):
    """The payloads are refused: ``status`` and the Classic API's error text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def new_uuid() -> str:
    return str(uuid.uuid4()).upper()


def decode_once(text: str) -> str:
    """One entity decode, as the Classic API applies to ``<payloads>`` after parsing the XML."""
    return _ENTITY.sub(lambda m: html.unescape(m.group(0)), text)


def _load(text: str) -> Any:
    return plistlib.loads(text.encode("utf-8"))


def accept(text: str) -> dict[str, Any]:
    """The property list as Jamf keeps it, or :class:`PayloadRefused` (400 not a plist, 409 bare ``&``)."""
    try:
        raw = _load(text)
    except Exception:  # expat, plistlib and value errors alike: the payload is not a property list
        raise PayloadRefused(400, "Unable to parse the configuration profile payloads") from None
    try:
        decoded = _load(decode_once(text))
    except Exception:  # a bare & or < after the second decode
        raise PayloadRefused(409, "Unable to update the database") from None
    if not isinstance(decoded, dict) or not isinstance(raw, dict):
        raise PayloadRefused(400, "Unable to parse the configuration profile payloads")
    items: list[Any] = []
    raw_items = raw.get("PayloadContent")
    for index, item in enumerate(decoded.get("PayloadContent") or []):
        verbatim = isinstance(item, dict) and item.get("PayloadType") not in RE_RENDERED_TYPES
        if verbatim and isinstance(raw_items, list) and index < len(raw_items):
            item = raw_items[index]  # stored verbatim: the extra entity layer stays in the values
        items.append(item)
    return {**decoded, "PayloadContent": items}


def identity(plist: dict[str, Any]) -> tuple[str, str]:
    """The top-level (PayloadUUID, PayloadIdentifier) a client sent; empty strings when absent."""
    uid, ident = plist.get("PayloadUUID"), plist.get("PayloadIdentifier")
    return (uid if isinstance(uid, str) else "", ident if isinstance(ident, str) else "")


def _ordered(values: dict[str, Any], order: tuple[str, ...]) -> dict[str, Any]:
    out = {k: values[k] for k in order if k in values}
    out.update({k: v for k, v in values.items() if k not in out})
    return out


def render(plist: dict[str, Any], *, name: str, uid: str, identifier: str, removable: bool) -> str:
    """The payloads as Jamf stores and answers them: ids re-derived, defaults added, re-indented."""
    organization = plist.get("PayloadOrganization") or DEFAULT_ORGANIZATION
    items = []
    for item in plist.get("PayloadContent") or []:
        if not isinstance(item, dict):
            continue
        item_uuid = new_uuid()
        rewritten = {
            **item,
            "PayloadDisplayName": ITEM_DISPLAY_NAME,
            "PayloadIdentifier": item_uuid,
            "PayloadUUID": item_uuid,
            "PayloadOrganization": item.get("PayloadOrganization") or organization,
            "PayloadEnabled": True,
        }
        items.append(_ordered(rewritten, _ITEM_ORDER))
    top = {
        **plist,
        "PayloadUUID": uid,
        "PayloadIdentifier": identifier,
        "PayloadDisplayName": name,
        "PayloadOrganization": organization,
        "PayloadEnabled": True,
        "PayloadRemovalDisallowed": not removable,
        "PayloadContent": items,
    }
    text = plistlib.dumps(_ordered(top, _TOP_ORDER), fmt=plistlib.FMT_XML, sort_keys=False).decode()
    text = text.replace('<plist version="1.0">', '<plist version="1">')
    return re.sub(r"^\t+", lambda m: "    " * len(m.group(0)), text, flags=re.M)
