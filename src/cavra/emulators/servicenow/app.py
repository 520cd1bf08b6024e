"""ServiceNow emulator: Table API and Change Management API, written from providers.md section 8.

What it checks, as the real instance does:

1. auth: Basic ``user:password`` or ``Bearer <oauth token>`` (a configured token, or one issued by
   ``POST /oauth_token.do`` and not yet expired: :mod:`cavra.emulators.servicenow.oauth`); missing, wrong or
   expired credentials get 401 with the exact ``{"error":{"message":"User Not Authenticated",
   "detail":"Required to provide Auth information"},"status":"failure"}`` envelope.
2. POST/PUT/PATCH without ``Accept`` or ``Content-Type`` get 400; a non-JSON content type 415; a body that
   is not a JSON object 400 with the failure envelope.
3. an unknown table gets 400 ``Invalid table <name>``.
4. Table API create: 201 with ``Location`` and ``result`` holding ``sys_id`` (32 hex) and ``number``
   (``CHG`` + 7 digits); ``X-no-response-body: true`` suppresses the body; ``sysparm_fields`` and
   ``sysparm_exclude_reference_link`` shape it.
5. Change API: 200 with ``{value, display_value}`` pairs and ``__meta.ignoredFields``. As documented
   (ServiceNowDocs ``markdown/api-reference/rest-apis/change-management-api.md``, xanadu):
   ``POST /api/sn_chg_rest/change/{normal,emergency}`` takes its fields as query parameters ("name-value
   pairs") and documents the request body as "None": a JSON body is ignored here, so a client that sends
   its fields there creates a change without them (no ``correlation_id``). The model-based
   ``POST /api/sn_chg_rest/change`` takes them from the query string or the JSON body ("Request body
   parameters override URL parameters"), with ``type`` or ``chg_model`` choosing the kind (``normal`` when
   neither is given).
6. ``GET /api/now/table/<table>?sysparm_query=correlation_id=X&sysparm_limit=1&sysparm_fields=…`` lookups;
   ``PATCH /api/now/table/<table>/<sys_id>`` updates, with ``work_notes`` journalled to ``sys_journal_field``.
7. an optional rate rule: 429 with ``Retry-After``, ``X-RateLimit-Limit/Reset/Rule`` and the exact body.
8. ``POST /oauth_token.do``: client-credentials and password grants, form-encoded; 401 ``invalid_client``
   for a bad client, 400 ``unsupported_grant_type``; tokens live ``token_lifetime`` (1799) seconds.
"""

from __future__ import annotations

import weakref
from typing import Any

from aiohttp import web

from cavra.emulators.framework import EmulatorHub, json_response
from cavra.emulators.servicenow.base import Gate, Settings, failure
from cavra.emulators.servicenow.oauth import OAuthEndpoint
from cavra.emulators.servicenow.store import TABLES, Store, render, render_change


class ServiceNowEmulator:
    """Handlers over one :class:`Store`."""

    def __init__(self, settings: Settings, hub: EmulatorHub | None = None) -> None:
        self.settings = settings
        self.gate = Gate(settings, hub)
        self.store = Store()

    def reset(self) -> None:
        self.gate.reset()
        self.store = Store()

    @staticmethod
    def _base(request: web.Request) -> str:
        return f"{request.url.origin()}/servicenow"

    def _table(self, request: web.Request) -> str | web.Response:
        table = request.match_info["table"]
        if table not in TABLES:
            return failure(400, f"Invalid table {table}", None)
        return table

    def _shape(self, request: web.Request, table: str, record: dict[str, str]) -> dict[str, Any]:
        q = request.query
        fields = [f.strip() for f in q.get("sysparm_fields", "").split(",") if f.strip()] or None
        links = q.get("sysparm_exclude_reference_link", "false").lower() != "true"
        return render(self._base(request), table, record, fields=fields, links=links)

    # -- Table API -----------------------------------------------------------------------------------------
    async def table_insert(self, request: web.Request) -> web.StreamResponse:
        who, body, denied = await self.gate.write(request)
        if denied is not None:
            return denied
        table = self._table(request)
        if isinstance(table, web.Response):
            return self.gate.stamp(table)
        record, _ = self.store.insert(table, body, user=who)
        location = f"{self._base(request)}/api/now/table/{table}/{record['sys_id']}"
        headers = {"Location": location}
        if request.headers.get("X-no-response-body", "").lower() == "true":
            return self.gate.stamp(web.Response(status=201, headers=headers))
        return self.gate.stamp(json_response({"result": self._shape(request, table, record)}, 201, headers))

    async def table_list(self, request: web.Request) -> web.StreamResponse:
        _, denied = self.gate.read(request)
        if denied is not None:
            return denied
        table = self._table(request)
        if isinstance(table, web.Response):
            return self.gate.stamp(table)
        q = request.query
        try:
            limit = int(q.get("sysparm_limit", "10000"))
            offset = int(q.get("sysparm_offset", "0"))
        except ValueError:
            return self.gate.stamp(failure(400, "Invalid sysparm_limit or sysparm_offset", None))
        rows = self.store.query(table, q.get("sysparm_query", ""))
        page = rows[offset : offset + max(limit, 0)]
        result = [self._shape(request, table, r) for r in page]
        return self.gate.stamp(json_response({"result": result}, headers={"X-Total-Count": str(len(rows))}))

    async def table_get(self, request: web.Request) -> web.StreamResponse:
        _, denied = self.gate.read(request)
        if denied is not None:
            return denied
        table = self._table(request)
        if isinstance(table, web.Response):
            return self.gate.stamp(table)
        record = self.store.get(table, request.match_info["sys_id"])
        if record is None:
            return self.gate.stamp(_no_record())
        return self.gate.stamp(json_response({"result": self._shape(request, table, record)}))

    async def table_update(self, request: web.Request) -> web.StreamResponse:
        who, body, denied = await self.gate.write(request)
        if denied is not None:
            return denied
        table = self._table(request)
        if isinstance(table, web.Response):
            return self.gate.stamp(table)
        record = self.store.get(table, request.match_info["sys_id"])
        if record is None:
            return self.gate.stamp(_no_record())
        self.store.update(table, record, body, user=who)
        return self.gate.stamp(json_response({"result": self._shape(request, table, record)}))

    # -- Change Management API -----------------------------------------------------------------------------
    async def change_create(self, request: web.Request) -> web.StreamResponse:
        who, body, denied = await self.gate.write(request)
        if denied is not None:
            return denied
        values: dict[str, Any] = {k: v for k, v in request.query.items() if not k.startswith("sysparm_")}
        kind = request.match_info.get("kind")
        if kind is not None:  # /change/{type}: documented request body "None"; only the query string counts
            values["type"] = kind
        else:  # the model-based /change: the body wins over the query string
            values.update(body)
            given = str(values.get("type") or values.get("chg_model") or "normal").lower()
            values["type"] = given if given in ("normal", "emergency", "standard") else "normal"
        values.setdefault("chg_model", values["type"])
        record, ignored = self.store.insert("change_request", values, user=who)
        result = render_change(record)
        result["__meta"] = {"ignoredFields": ignored}
        return self.gate.stamp(json_response({"result": result}))


def _no_record() -> web.Response:
    return failure(404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval")


_EMULATORS: weakref.WeakKeyDictionary[EmulatorHub, ServiceNowEmulator] = weakref.WeakKeyDictionary()


def servicenow_emulator(hub: EmulatorHub) -> ServiceNowEmulator:
    """The ServiceNow emulator mounted on this hub (for in-process tests: ``….store.tables``)."""
    return _EMULATORS[hub]


def create_app(hub: EmulatorHub, settings: Settings) -> web.Application:
    emu = ServiceNowEmulator(settings, hub)
    _EMULATORS[hub] = emu
    hub.reset_hooks.append(emu.reset)
    app = web.Application()
    app.router.add_post("/oauth_token.do", OAuthEndpoint(hub, settings).token)
    for prefix in ("/api/now/table", "/api/now/v1/table", "/api/now/v2/table"):
        app.router.add_post(prefix + "/{table}", emu.table_insert)
        app.router.add_get(prefix + "/{table}", emu.table_list)
        app.router.add_get(prefix + "/{table}/{sys_id}", emu.table_get)
        app.router.add_patch(prefix + "/{table}/{sys_id}", emu.table_update)
        app.router.add_put(prefix + "/{table}/{sys_id}", emu.table_update)
    app.router.add_post("/api/sn_chg_rest/change/{kind:normal|emergency}", emu.change_create)
    app.router.add_post("/api/sn_chg_rest/change", emu.change_create)
    return app


def demo_config(base_url: str, settings: Settings) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The ``servicenow`` connector entry pointing at this emulator, and its environment."""
    username, password = next(iter(settings.users.items()))
    entry: dict[str, Any] = {
        "url_env": "SERVICENOW_URL",
        "username": username,
        "password_env": "SERVICENOW_PASSWORD",
        "api": "table",
        "table": "change_request",
        "type": "normal",
        "category": "Security",
        "assignment_group": "CAB Approval",
        "allow_http": True,
    }
    return entry, {"SERVICENOW_URL": f"{base_url}/servicenow", "SERVICENOW_PASSWORD": password}
