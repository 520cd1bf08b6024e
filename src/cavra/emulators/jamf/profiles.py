"""Classic API ``/JSSResource/osxconfigurationprofiles`` of the emulated Jamf Pro.

Reads are served from the view of the node that took the request (:mod:`cavra.emulators.jamf.cluster`),
writes land on the database and on that node. Stored payloads are rewritten as Jamf does, and an update
whose top-level PayloadUUID / PayloadIdentifier differ from the stored ones adds a profile instance, a
ghost copy on the Macs (:mod:`cavra.emulators.jamf.payloads`).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from aiohttp import web

from cavra.emulators.jamf.cluster import Node
from cavra.emulators.jamf.model import (
    JamfState,
    Profile,
    classic_error,
    id_answer,
    read_profile,
    stored_profile,
    xml_answer,
)
from cavra.emulators.jamf.payloads import PayloadRefused, identity, new_uuid, render

BASE = "/JSSResource/osxconfigurationprofiles"
_NOT_FOUND = "The server has not found anything matching the request URI"


def store(profile: Profile, root: ET.Element, plist: dict[str, Any] | None, *, creating: bool) -> None:
    """Keep what was sent as Jamf keeps it: new identifiers on create; on update the sent top-level ones,
    a new instance (a ghost copy on the Macs) when they differ from the stored ones."""
    profile.element = root
    if plist is None:
        return  # an update without payloads keeps the stored ones
    if creating:
        uid = ident = new_uuid()
    else:
        sent_uid, sent_ident = identity(plist)
        uid = sent_uid or new_uuid()
        ident = sent_ident or uid
    if (uid, ident) not in profile.instances:
        profile.instances.append((uid, ident))
    profile.payload_uuid, profile.payload_identifier = uid, ident
    removable = (root.findtext("general/user_removable") or "false").strip().lower() == "true"
    profile.payloads = render(plist, name=profile.name, uid=uid, identifier=ident, removable=removable)


class _ProfileRoutes:
    """The profile routes of :func:`add_routes`."""

    def __init__(self, st: JamfState, authorised: Callable[[web.Request], web.Response | None]) -> None:
        self.st = st
        self.authorised = authorised

    def node_of(self, request: web.Request) -> Node | None:
        return self.st.cluster.node_of(request)

    def view(self, request: web.Request) -> dict[int, Profile]:
        return self.st.cluster.view(self.st, self.node_of(request))

    def xml_body_error(self, request: web.Request) -> web.Response | None:
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype not in ("text/xml", "application/xml"):
            return classic_error(415, "Unsupported Media Type: send text/xml or application/xml")
        return None

    def find(self, request: web.Request) -> Profile | web.Response | None:
        key, value = request.match_info["key"], request.match_info["value"]
        seen = self.view(request)
        if key == "id":
            try:
                return seen.get(int(value))
            except ValueError:
                return classic_error(400, f"Invalid id {value}")
        if key == "name":
            return self.st.by_name(value, seen)
        return classic_error(404, _NOT_FOUND)

    async def list_profiles(self, request: web.Request) -> web.Response:
        denied = self.authorised(request)
        if denied is not None:
            return denied
        seen = self.view(request)
        root = ET.Element("os_x_configuration_profiles")
        ET.SubElement(root, "size").text = str(len(seen))
        for profile in seen.values():
            item = ET.SubElement(root, "os_x_configuration_profile")
            ET.SubElement(item, "id").text = str(profile.id)
            ET.SubElement(item, "name").text = profile.name
        return xml_answer(root)

    async def get_profile(self, request: web.Request) -> web.Response:
        denied = self.authorised(request)
        if denied is not None:
            return denied
        found = self.find(request)
        if isinstance(found, web.Response):
            return found
        if found is None:
            return classic_error(404, _NOT_FOUND)
        return xml_answer(stored_profile(found))

    async def create_profile(self, request: web.Request) -> web.Response:
        denied = self.authorised(request) or self.xml_body_error(request)
        if denied is not None:
            return denied
        if request.match_info.get("key", "id") != "id":
            return classic_error(400, "Create by id only (id/0)")
        try:
            root, plist = read_profile(await request.read())
        except PayloadRefused as exc:
            return classic_error(exc.status, exc.message)
        name = (root.findtext("general/name") or "").strip()
        if self.st.by_name(name) is not None:
            return classic_error(409, "Duplicate name")
        profile = Profile(id=self.st.next_id, name=name, element=root)
        store(profile, root, plist, creating=True)
        self.st.next_id += 1
        self.st.profiles[profile.id] = profile
        self.st.cluster.wrote(self.node_of(request), profile, profile.id)
        return id_answer(profile.id)

    async def update_profile(self, request: web.Request) -> web.Response:
        denied = self.authorised(request) or self.xml_body_error(request)
        if denied is not None:
            return denied
        seen = self.find(request)
        if isinstance(seen, web.Response):
            return seen
        found = None if seen is None else self.st.profiles.get(seen.id)
        if found is None:
            return classic_error(404, _NOT_FOUND)
        try:
            root, plist = read_profile(await request.read())
        except PayloadRefused as exc:
            return classic_error(exc.status, exc.message)
        name = (root.findtext("general/name") or "").strip()
        clash = self.st.by_name(name)
        if clash is not None and clash.id != found.id:
            return classic_error(409, "Duplicate name")
        found.name = name
        store(found, root, plist, creating=False)
        self.st.cluster.wrote(self.node_of(request), found, found.id)
        return id_answer(found.id)

    async def delete_profile(self, request: web.Request) -> web.Response:
        denied = self.authorised(request)
        if denied is not None:
            return denied
        found = self.find(request)
        if isinstance(found, web.Response):
            return found
        if found is None or found.id not in self.st.profiles:
            return classic_error(404, _NOT_FOUND)
        del self.st.profiles[found.id]
        self.st.cluster.wrote(self.node_of(request), None, found.id)
        return id_answer(found.id)


def add_routes(
    app: web.Application, st: JamfState, authorised: Callable[[web.Request], web.Response | None]
) -> None:
    """The profile routes on ``app``."""

    routes = _ProfileRoutes(st, authorised)
    app.router.add_get(BASE, routes.list_profiles)
    app.router.add_post(BASE, routes.create_profile)
    app.router.add_get(BASE + "/{key}/{value}", routes.get_profile)
    app.router.add_post(BASE + "/{key}/{value}", routes.create_profile)
    app.router.add_put(BASE + "/{key}/{value}", routes.update_profile)
    app.router.add_delete(BASE + "/{key}/{value}", routes.delete_profile)
