"""The ServiceNow emulator (Table API and Change Management API), over real loopback HTTP."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer
from cavra.emulators.servicenow import Settings, demo_config, servicenow_emulator

USER, PASSWORD = "cavra.integration", "sn-demo-password-2b9d"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
BEARER = "Bearer sn-demo-oauth-token-8e4c"
NOT_AUTH = {
    "error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"},
    "status": "failure",
}
TABLE = "/api/now/table/change_request"
JSON_HEADERS = {"Accept": "application/json", "Content-Type": "application/json"}


@pytest.fixture
async def server(emulator_factory: Callable[..., EmulatorServer]) -> AsyncIterator[EmulatorServer]:
    async with emulator_factory(providers=["servicenow"]) as srv:
        yield srv


async def call(
    srv: EmulatorServer,
    method: str,
    path: str,
    *,
    body: Any = None,
    auth: str | None = BASIC,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
    params: dict[str, str] | None = None,
) -> tuple[int, Any, dict[str, str]]:
    sent = dict(JSON_HEADERS if headers is None else headers)
    if auth is not None:
        sent["Authorization"] = auth
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    url = srv.base_url + "/servicenow" + path
    async with (
        aiohttp.ClientSession(skip_auto_headers=("Accept", "Content-Type")) as session,
        session.request(method, url, data=data, headers=sent, params=params) as r,
    ):
        text = await r.text()
        try:
            parsed: Any = json.loads(text) if text else None
        except ValueError:
            parsed = text
        return r.status, parsed, {k.lower(): v for k, v in r.headers.items()}


CHANGE = {
    "short_description": "CAVRA evidence bundle: s-1",
    "description": "details",
    "type": "normal",
    "category": "Security",
    "assignment_group": "CAB Approval",
    "impact": "2",
    "risk": "2",
    "correlation_id": "cavra-0123456789abcdef",
}


# -- Table API create -------------------------------------------------------------------------------------
async def test_table_insert_201_with_location_sys_id_and_number(server: EmulatorServer) -> None:
    status, body, headers = await call(server, "POST", TABLE, body=CHANGE)
    assert status == 201
    result = body["result"]
    assert re.fullmatch(r"[0-9a-f]{32}", result["sys_id"])
    assert re.fullmatch(r"CHG\d{7}", result["number"])
    assert headers["location"] == f"{server.base_url}/servicenow{TABLE}/{result['sys_id']}"
    assert result["correlation_id"] == "cavra-0123456789abcdef"
    assert result["state"] == "-5" and result["impact"] == "2"
    assert result["assignment_group"]["value"] == "CAB Approval" and "link" in result["assignment_group"]
    _, second, _ = await call(server, "POST", TABLE, body=CHANGE)
    assert int(second["result"]["number"][3:]) == int(result["number"][3:]) + 1


async def test_insert_shapes_and_ignores_unknown_fields(server: EmulatorServer) -> None:
    status, body, _ = await call(
        server,
        "POST",
        TABLE,
        body={**CHANGE, "no_such_field": "x"},
        params={"sysparm_fields": "sys_id,number,assignment_group", "sysparm_exclude_reference_link": "true"},
    )
    assert status == 201
    assert set(body["result"]) == {"sys_id", "number", "assignment_group"}
    assert body["result"]["assignment_group"] == "CAB Approval"
    record = servicenow_emulator(server.hub).store.tables["change_request"][0]
    assert "no_such_field" not in record


async def test_no_response_body_header(server: EmulatorServer) -> None:
    headers = {**JSON_HEADERS, "X-no-response-body": "true"}
    status, body, resp_headers = await call(server, "POST", TABLE, body=CHANGE, headers=headers)
    assert status == 201 and body is None
    assert "/api/now/table/change_request/" in resp_headers["location"]
    assert len(servicenow_emulator(server.hub).store.tables["change_request"]) == 1


async def test_versioned_path_and_bearer(server: EmulatorServer) -> None:
    status, body, _ = await call(server, "POST", "/api/now/v2/table/change_request", body=CHANGE, auth=BEARER)
    assert status == 201 and body["result"]["sys_created_by"] == "oauth.user"


@pytest.mark.parametrize(
    "auth",
    [None, "Basic " + base64.b64encode(f"{USER}:wrong".encode()).decode(), "Bearer wrong-token", "Basic %%%"],
)
async def test_missing_or_wrong_auth_is_the_exact_envelope(server: EmulatorServer, auth: str | None) -> None:
    for method, path in (("POST", TABLE), ("GET", TABLE), ("PATCH", TABLE + "/" + "0" * 32)):
        status, body, _ = await call(server, method, path, body=CHANGE, auth=auth)
        assert (status, body) == (401, NOT_AUTH)
    assert servicenow_emulator(server.hub).store.tables["change_request"] == []


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Content-Type": "application/json"}, 400),  # no Accept
        ({"Accept": "application/json"}, 400),  # no Content-Type
        ({"Accept": "application/xml", "Content-Type": "application/json"}, 406),
        ({"Accept": "application/json", "Content-Type": "text/plain"}, 415),
    ],
)
async def test_write_needs_accept_and_content_type(
    server: EmulatorServer, headers: dict[str, str], status: int
) -> None:
    got, body, _ = await call(server, "POST", TABLE, body=CHANGE, headers=headers)
    assert got == status
    assert body["status"] == "failure" and body["error"]["message"]
    assert servicenow_emulator(server.hub).store.tables["change_request"] == []


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"text"'])
async def test_non_json_body_400(server: EmulatorServer, raw: bytes) -> None:
    status, body, _ = await call(server, "POST", TABLE, raw=raw)
    assert status == 400
    assert body == {
        "error": {"message": "Exception while reading request", "detail": "The payload is not valid JSON."},
        "status": "failure",
    }


async def test_unknown_table_400(server: EmulatorServer) -> None:
    status, body, _ = await call(server, "POST", "/api/now/table/change_requests", body=CHANGE)
    assert (status, body) == (
        400,
        {"error": {"message": "Invalid table change_requests", "detail": None}, "status": "failure"},
    )
    status, _, _ = await call(server, "GET", "/api/now/table/nope")
    assert status == 400


# -- lookup and update ------------------------------------------------------------------------------------
async def test_lookup_by_correlation_id(server: EmulatorServer) -> None:
    await call(server, "POST", TABLE, body=CHANGE)
    await call(server, "POST", TABLE, body={**CHANGE, "correlation_id": "other"})
    params = {
        "sysparm_query": "correlation_id=cavra-0123456789abcdef",
        "sysparm_limit": "1",
        "sysparm_fields": "sys_id,number,correlation_id",
    }
    status, body, headers = await call(server, "GET", TABLE, params=params)
    assert status == 200 and headers["x-total-count"] == "1"
    (row,) = body["result"]
    assert set(row) == {"sys_id", "number", "correlation_id"}
    assert row["correlation_id"] == "cavra-0123456789abcdef"
    status, body, _ = await call(
        server, "GET", TABLE, params={**params, "sysparm_query": "correlation_id=missing"}
    )
    assert (status, body) == (200, {"result": []})


async def test_query_terms_on_unknown_fields_are_ignored_like_servicenow(server: EmulatorServer) -> None:
    await call(server, "POST", TABLE, body=CHANGE)
    await call(server, "POST", TABLE, body={**CHANGE, "correlation_id": "other"})
    _, body, _ = await call(server, "GET", TABLE, params={"sysparm_query": "correlation_idd=nothing"})
    assert len(body["result"]) == 2
    _, body, _ = await call(
        server, "GET", TABLE, params={"sysparm_query": "correlation_id!=other^ORDERBYDESCnumber"}
    )
    assert [r["correlation_id"] for r in body["result"]] == ["cavra-0123456789abcdef"]


async def test_patch_work_notes_are_journalled(server: EmulatorServer) -> None:
    _, created, _ = await call(server, "POST", TABLE, body=CHANGE)
    sys_id = created["result"]["sys_id"]
    status, body, _ = await call(server, "PATCH", f"{TABLE}/{sys_id}", body={"work_notes": "delivered again"})
    assert status == 200 and body["result"]["sys_id"] == sys_id and body["result"]["work_notes"] == ""
    status, body, _ = await call(
        server,
        "GET",
        "/api/now/table/sys_journal_field",
        params={"sysparm_query": f"element_id={sys_id}^element=work_notes"},
    )
    assert status == 200
    assert [(j["value"], j["name"]) for j in body["result"]] == [("delivered again", "change_request")]
    status, body, _ = await call(server, "GET", f"{TABLE}/{sys_id}")
    assert status == 200 and body["result"]["number"] == created["result"]["number"]


async def test_patch_unknown_record_404(server: EmulatorServer) -> None:
    status, body, _ = await call(server, "PATCH", f"{TABLE}/{'a' * 32}", body={"work_notes": "x"})
    assert status == 404 and body["error"]["message"] == "No Record found" and body["status"] == "failure"


# -- Change Management API --------------------------------------------------------------------------------
async def test_change_api_normal_200_value_display_value(server: EmulatorServer) -> None:
    # /change/normal documents its fields as query parameters and its request body as "None": a JSON body
    # is ignored, so fields sent there (correlation_id among them) are lost
    status, body, _ = await call(
        server,
        "POST",
        "/api/sn_chg_rest/change/normal",
        body={**CHANGE, "type": "emergency"},
        params={"short_description": "from query", "category": "Other", "bogus": "1"},
    )
    assert status == 200
    result = body["result"]
    assert result["type"] == {"value": "normal", "display_value": "Normal"}  # the path decides the type
    assert result["state"] == {"value": "-5", "display_value": "New"}
    assert result["short_description"]["value"] == "from query"
    assert result["category"]["value"] == "Other"
    assert result["correlation_id"]["value"] == ""  # it was only in the ignored body
    assert re.fullmatch(r"CHG\d{7}", result["number"]["value"])
    assert re.fullmatch(r"[0-9a-f]{32}", result["sys_id"]["value"])
    assert result["__meta"]["ignoredFields"] == ["bogus"]
    status, body, _ = await call(server, "POST", "/api/sn_chg_rest/change/emergency", body=CHANGE)
    assert body["result"]["type"]["value"] == "emergency"
    assert body["result"]["correlation_id"]["value"] == ""
    # the model-based /change takes a JSON body (it wins over the query string); type chooses the kind
    status, body, _ = await call(
        server,
        "POST",
        "/api/sn_chg_rest/change",
        body={**CHANGE, "type": "emergency"},
        params={"short_description": "from query"},
    )
    assert status == 200
    assert body["result"]["type"]["value"] == "emergency"
    assert body["result"]["short_description"]["value"] == "CAVRA evidence bundle: s-1"
    assert body["result"]["correlation_id"]["value"] == "cavra-0123456789abcdef"
    _, body, _ = await call(server, "POST", "/api/sn_chg_rest/change", body={"short_description": "x"})
    assert body["result"]["type"]["value"] == "normal"
    # only the model-based one is found by the Table API lookup
    _, rows, _ = await call(
        server, "GET", TABLE, params={"sysparm_query": "correlation_id=cavra-0123456789abcdef"}
    )
    assert len(rows["result"]) == 1


# -- rate rule, faults, reset, demo config ----------------------------------------------------------------
async def test_rate_rule_429_with_headers_and_exact_body(
    emulator_factory: Callable[..., EmulatorServer],
) -> None:
    overrides = {"servicenow": {"rate_limit_requests": 2, "rate_limit_window_seconds": 3600}}
    async with emulator_factory(providers=["servicenow"], overrides=overrides) as srv:
        status, _, headers = await call(srv, "POST", TABLE, body=CHANGE)
        assert (
            status == 201
            and headers["x-ratelimit-limit"] == "2"
            and headers["x-ratelimit-rule"] == "Table API"
        )
        assert (await call(srv, "GET", TABLE))[0] == 200
        status, body, headers = await call(srv, "POST", TABLE, body=CHANGE)
        assert status == 429
        assert body == {
            "error": {
                "message": "Rate limit exceeded",
                "detail": "Rate limit of 2 requests per hour for Table API exceeded",
            },
            "status": "failure",
        }
        assert 3500 <= int(headers["retry-after"]) <= 3600
        assert int(headers["x-ratelimit-reset"]) > 0 and headers["x-ratelimit-limit"] == "2"
        assert len(servicenow_emulator(srv.hub).store.tables["change_request"]) == 1


async def test_lost_response_still_inserts_and_reset_forgets(server: EmulatorServer) -> None:
    server.hub.add_fault("servicenow", Fault(drop=True, after_handler=True))
    with pytest.raises(aiohttp.ClientError):
        await call(server, "POST", TABLE, body=CHANGE)
    assert len(servicenow_emulator(server.hub).store.tables["change_request"]) == 1
    server.hub.reset()
    assert servicenow_emulator(server.hub).store.tables["change_request"] == []


def test_demo_config() -> None:
    entry, env = demo_config("http://127.0.0.1:9", Settings())
    assert entry is not None
    assert entry["url_env"] == "SERVICENOW_URL" and env["SERVICENOW_URL"] == "http://127.0.0.1:9/servicenow"
    assert entry["username"] == USER and entry["password_env"] == "SERVICENOW_PASSWORD"
    assert env["SERVICENOW_PASSWORD"] == PASSWORD and PASSWORD not in json.dumps(entry)
    assert entry["allow_http"] is True
