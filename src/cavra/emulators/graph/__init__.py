"""Emulated Microsoft Graph (Intune device management), written from providers.md §10.

Routes (mounted at ``/graph``), for ``{version}`` ``v1.0`` or ``beta``:

* ``GET|POST /{version}/deviceManagement/{collection}`` with ``$filter=displayName eq '…'`` on GET;
* ``GET|PATCH|DELETE /{version}/deviceManagement/{collection}/{id}`` (``$expand=assignments`` on GET);
* ``POST /{version}/deviceManagement/{collection}/{id}/assign`` and ``GET …/{id}/assignments``.

Collections: ``deviceConfigurations`` (both versions), ``deviceShellScripts`` and
``deviceManagementScripts`` (beta only). What is checked, as the real service does:

* a Bearer token issued by the Entra emulator (``hub.tokens``) for audience ``https://graph.microsoft.com``
  and not expired, else 401 ``InvalidAuthenticationToken``; writes need the application role
  ``DeviceManagementConfiguration.ReadWrite.All`` (reads also accept ``….Read.All``), else 403 with code
  ``Forbidden`` and a ``message`` that is itself a JSON string (``{"_version": 3, "Message": "Application is
  not authorized to perform this operation. Application must have one of the following scopes: … -
  Operation ID …", "CustomApiErrorPhrase": "", …}``), as Intune answers (Microsoft support article "403
  Forbidden error when you query Intune objects in Graph Explorer", MicrosoftDocs/SupportArticles-docs);
* ``@odata.type`` present and known for the collection and version, else 400 ``BadRequest`` "A type named
  '…' could not be resolved by the model" (Graph's OData layer, observed in Micke-K/IntuneManagement issue
  318); properties known for the type *in that version*, else 400 ``BadRequest`` "The property '…' does not
  exist on type '…'": v1.0 ``macOSCustomConfiguration`` has only ``id``, ``lastModifiedDateTime``,
  ``createdDateTime``, ``description``, ``displayName``, ``version``, ``payloadName``, ``payloadFileName``
  and ``payload`` (microsoft-graph-docs-contrib ``api-reference/v1.0/resources/
  intune-deviceconfig-macoscustomconfiguration.md``); ``roleScopeTagIds`` and ``deploymentChannel`` are
  beta-only; ``displayName`` (and the type's required fields) present and ``payload`` / ``scriptContent``
  valid base64, else 400 ``BadRequest`` with Intune's JSON-string ``message`` (the shape observed in
  Microsoft365DSC issue 4724: ``[BadRequest] {"_version": 3, "Message": "An error has occurred - Operation
  ID …"}``); PATCH must keep the object's type;
* lists answer ``$filter=displayName eq '…'``; with ``ignore_filter`` the filter is silently ignored and
  every object returned, as Graph does for a filter an endpoint does not support (which is why the
  connector checks the names it gets); with ``page_size`` a list is paged by ``@odata.nextLink``
  (``$skiptoken``);
* create: 201 with a GUID ``id``, ``createdDateTime``, ``lastModifiedDateTime``, ``version``; update: 200 with
  the object; assign: 200 ``{"value": [...]}`` (group targets need a GUID ``groupId``);
* writes are throttled per application: ``write_limit`` per ``write_window`` seconds (Intune's 100 per 20 s),
  beyond which the answer is 429 ``activityLimitReached`` with ``Retry-After`` in seconds.

Errors have Graph's shape ``{"error": {"code", "message", "innerError": {"date", "request-id", …}}}``.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections import deque
from typing import Any

from aiohttp import web

from cavra.emulators.framework import EmulatorHub, json_response
from cavra.emulators.graph.model import (
    ASSIGN_KEYS,
    AUDIENCES,
    DEMO_GROUP_ID,
    FILTER,
    GROUP_TARGETS,
    GUID,
    READ_ROLE,
    TARGETS,
    TYPES,
    WRITE_ROLE,
    GraphState,
    Settings,
    graph_error,
    intune_message,
    now_iso,
    state,
    validate,
)

__all__ = [
    "DEMO_GROUP_ID",
    "GraphState",
    "Settings",
    "create_app",
    "demo_config",
    "graph_error",
    "state",
    "validate",
]


class GraphRoutes:
    """The Graph device-management handlers over one hub's state."""

    def __init__(self, hub: EmulatorHub, settings: Settings) -> None:
        self.hub = hub
        self.settings = settings
        self.st = state(hub)

    def check_auth(self, request: web.Request, *, write: bool) -> tuple[str | None, web.Response | None]:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None, graph_error(401, "InvalidAuthenticationToken", "Access token is empty.")
        issued = self.hub.tokens.get(value.strip())
        if issued is None:
            return None, graph_error(401, "InvalidAuthenticationToken", "Access token validation failure.")
        if issued.audience not in AUDIENCES:
            return None, graph_error(
                401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience."
            )
        if issued.expires_at <= time.time():
            return None, graph_error(
                401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired."
            )
        allowed = {WRITE_ROLE} if write else {WRITE_ROLE, READ_ROLE}
        if not allowed & set(issued.roles):
            message = (
                "Application is not authorized to perform this operation. Application must have one of the "
                "following scopes: " + ", ".join(sorted(allowed))
            )
            return None, graph_error(
                403, "Forbidden", intune_message(message, request.match_info["collection"])
            )
        return issued.client_id, None

    def throttle(self, client_id: str) -> web.Response | None:
        now = time.monotonic()
        window = self.st.writes.setdefault(client_id, deque())
        while window and window[0] <= now - self.settings.write_window:
            window.popleft()
        if len(window) >= self.settings.write_limit:
            wait = max(1, math.ceil(window[0] + self.settings.write_window - now))
            return graph_error(
                429,
                "activityLimitReached",
                "The request has been throttled.",
                headers={"Retry-After": str(wait)},
            )
        window.append(now)
        return None

    def route(self, request: web.Request, *, write: bool) -> tuple[str, str, web.Response | None]:
        version, collection = request.match_info["version"], request.match_info["collection"]
        if version not in ("v1.0", "beta"):
            return version, collection, graph_error(400, "BadRequest", f"Invalid version: {version}")
        versions = {v for spec in TYPES.values() if spec[0] == collection for v in spec[1]}
        if version not in versions:
            return (
                version,
                collection,
                graph_error(400, "BadRequest", f"Resource not found for the segment '{collection}'."),
            )
        client_id, denied = self.check_auth(request, write=write)
        if denied is None and write and client_id is not None:
            denied = self.throttle(client_id)
        return version, collection, denied

    async def read_json(self, request: web.Request) -> Any:
        try:
            return json.loads((await request.read()).decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None

    def context(self, request: web.Request, version: str, collection: str) -> str:
        return f"{request.url.origin()}/graph/{version}/$metadata#deviceManagement/{collection}"

    def lookup(self, request: web.Request, collection: str) -> dict[str, Any] | web.Response:
        found = self.st.collection(collection).get(request.match_info["id"])
        if found is None:
            return graph_error(
                404, "itemNotFound", f"The resource '{request.match_info['id']}' was not found."
            )
        return found

    async def list_items(self, request: web.Request) -> web.Response:
        version, collection, denied = self.route(request, write=False)
        if denied is not None:
            return denied
        items = list(self.st.collection(collection).values())
        expr = request.query.get("$filter")
        if expr is not None and not self.settings.ignore_filter:
            match = FILTER.match(expr)
            if match is None:
                return graph_error(400, "invalidRequest", f"Invalid filter clause: {expr}")
            wanted = match.group(1).replace("''", "'")
            items = [i for i in items if i.get("displayName") == wanted]
        answer: dict[str, Any] = {"@odata.context": self.context(request, version, collection)}
        size = self.settings.page_size
        if size > 0:
            try:
                skip = max(0, int(request.query.get("$skiptoken", "0")))
            except ValueError:
                return graph_error(400, "BadRequest", "The $skiptoken is not valid.")
            if skip + size < len(items):
                query = {k: v for k, v in request.query.items() if k != "$skiptoken"}
                answer["@odata.nextLink"] = str(
                    request.url.with_query({**query, "$skiptoken": str(skip + size)})
                )
            items = items[skip : skip + size]
        answer["value"] = items
        return json_response(answer)

    def refused(self, problem: tuple[str, str], collection: str) -> web.Response:
        layer, message = problem
        return graph_error(
            400, "BadRequest", message if layer == "odata" else intune_message(message, collection)
        )

    async def create_item(self, request: web.Request) -> web.Response:
        version, collection, denied = self.route(request, write=True)
        if denied is not None:
            return denied
        body = await self.read_json(request)
        problem = validate(body, collection, version)
        if problem is not None:
            return self.refused(problem, collection)
        now = now_iso()
        item = {k: v for k, v in body.items() if k not in ("id", "createdDateTime", "lastModifiedDateTime")}
        item.update(
            {"id": str(uuid.uuid4()), "createdDateTime": now, "lastModifiedDateTime": now, "version": 1}
        )
        item.setdefault("description", None)
        if version == "beta":  # scope tags exist in beta only
            item.setdefault("roleScopeTagIds", ["0"])
        self.st.collection(collection)[item["id"]] = item
        return json_response(
            {"@odata.context": self.context(request, version, collection) + "/$entity", **item}, status=201
        )

    async def get_item(self, request: web.Request) -> web.Response:
        version, collection, denied = self.route(request, write=False)
        if denied is not None:
            return denied
        found = self.lookup(request, collection)
        if isinstance(found, web.Response):
            return found
        answer = {"@odata.context": self.context(request, version, collection) + "/$entity", **found}
        expand = request.query.get("$expand")
        if expand is not None:
            if expand.strip() != "assignments":
                return graph_error(400, "invalidRequest", f"Could not find a property named '{expand}'.")
            answer["assignments"] = self.st.assignments.get(found["id"], [])
        return json_response(answer)

    async def update_item(self, request: web.Request) -> web.Response:
        version, collection, denied = self.route(request, write=True)
        if denied is not None:
            return denied
        found = self.lookup(request, collection)
        if isinstance(found, web.Response):
            return found
        body = await self.read_json(request)
        problem = validate(body, collection, version, existing_type=found["@odata.type"])
        if problem is not None:
            return self.refused(problem, collection)
        for name, value in body.items():
            if name not in ("id", "createdDateTime", "lastModifiedDateTime", "version"):
                found[name] = value
        found["lastModifiedDateTime"] = now_iso()
        found["version"] = int(found.get("version", 1)) + 1
        return json_response(
            {"@odata.context": self.context(request, version, collection) + "/$entity", **found}
        )

    async def delete_item(self, request: web.Request) -> web.Response:
        _, collection, denied = self.route(request, write=True)
        if denied is not None:
            return denied
        found = self.lookup(request, collection)
        if isinstance(found, web.Response):
            return found
        del self.st.collection(collection)[found["id"]]
        self.st.assignments.pop(found["id"], None)
        return web.Response(status=204)

    async def assign(self, request: web.Request) -> web.Response:
        _, collection, denied = self.route(request, write=True)
        if denied is not None:
            return denied
        found = self.lookup(request, collection)
        if isinstance(found, web.Response):
            return found
        body = await self.read_json(request)
        key = ASSIGN_KEYS[collection]
        given = body.get(key) if isinstance(body, dict) else None
        if not isinstance(given, list):
            return graph_error(
                400, "invalidRequest", f"The parameter '{key}' is required and must be a list."
            )
        stored: list[dict[str, Any]] = []
        for entry in given:
            target = entry.get("target") if isinstance(entry, dict) else None
            target_type = target.get("@odata.type") if isinstance(target, dict) else None
            if not isinstance(target, dict) or target_type not in TARGETS:
                return graph_error(
                    400, "invalidRequest", "Each assignment needs a target with a known @odata.type."
                )
            if target_type in GROUP_TARGETS and not GUID.match(str(target.get("groupId", ""))):
                return graph_error(400, "invalidRequest", "A group assignment target needs a GUID groupId.")
            stored.append({"id": f"{found['id']}_{target.get('groupId', 'all')}", "target": target})
        self.st.assignments[found["id"]] = stored
        return json_response({"value": stored})

    async def list_assignments(self, request: web.Request) -> web.Response:
        _, collection, denied = self.route(request, write=False)
        if denied is not None:
            return denied
        found = self.lookup(request, collection)
        if isinstance(found, web.Response):
            return found
        return json_response({"value": self.st.assignments.get(found["id"], [])})


def create_app(hub: EmulatorHub, settings: Settings) -> web.Application:
    """The Graph device-management routes, mounted at ``/graph``."""
    routes = GraphRoutes(hub, settings)
    hub.reset_hooks.append(routes.st.clear)
    app = web.Application()
    base = "/{version}/deviceManagement/{collection}"
    app.router.add_get(base, routes.list_items)
    app.router.add_post(base, routes.create_item)
    app.router.add_get(base + "/{id}", routes.get_item)
    app.router.add_patch(base + "/{id}", routes.update_item)
    app.router.add_delete(base + "/{id}", routes.delete_item)
    app.router.add_post(base + "/{id}/assign", routes.assign)
    app.router.add_get(base + "/{id}/assignments", routes.list_assignments)
    return app


def demo_config(base_url: str, settings: Settings) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """Point the Intune connector at this emulator, with the Entra emulator as its authority."""
    from cavra.emulators.entra import DEMO_TENANT_ID, INTUNE_CLIENT_ID, INTUNE_CLIENT_SECRET

    entry: dict[str, Any] = {
        "provider": "intune",
        "url_env": "INTUNE_GRAPH_URL",
        "tenant_id": DEMO_TENANT_ID,
        "client_id": INTUNE_CLIENT_ID,
        "client_secret_env": "INTUNE_CLIENT_SECRET",
        "authority_url": base_url + "/entra",
        "group_id": DEMO_GROUP_ID,
        "allow_http": True,
    }
    return entry, {"INTUNE_GRAPH_URL": base_url + "/graph", "INTUNE_CLIENT_SECRET": INTUNE_CLIENT_SECRET}
