"""Text the store cannot keep is refused at the door: 422 naming the field, nothing queued, nothing sent.

A NUL character anywhere in an event used to pass the API: the provider received the event, then the
record could not be stored on PostgreSQL and the job was sent again at every lease expiry. A lone surrogate
(``"\\ud800"`` in the JSON text) was a 500; so was a NUL in an artifact path (at publication). Every route
that takes a body, a path parameter or a query parameter is checked (see ``cavra.api.checked``).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from cavra.emulators.server import EmulatorServer

from ..store.conftest import pg_url, pg_user  # noqa: F401
from .conftest import (
    EXPORT,
    PROMOTION,
    ROLLBACK,
    SEED_EVENT,
    SPLUNK_INTEGRATION,
    AppFactory,
    assert_error,
    bearer,
    load,
    token_set,
)

NUL = "\\u0000"  # as JSON text
LONE = "\\ud800"


def _raw(template: str) -> bytes:
    return template.encode()


EVENT_CASES = [
    pytest.param(
        '{"event": {"event_type": "cavra.evidence_bundle' + NUL + '"}}',
        "body.event.event_type: contains a NUL character (U+0000)",
        id="nul-event-type",
    ),
    pytest.param(
        '{"event": {"event_type": "x", "event_id": "evt-' + NUL + '"}}',
        "body.event.event_id: contains a NUL character",
        id="nul-event-id",
    ),
    pytest.param(
        '{"event": {"event_type": "x", "labels": {"a": ["ok", {"b": "c' + NUL + '"}]}}}',
        "body.event.labels.a[1].b: contains a NUL character",
        id="nul-nested",
    ),
    pytest.param(
        '{"event": {"event_type": "x", "labels": {"k' + NUL + '": 1}}}',
        "body.event.labels: has a key that contains a NUL character",
        id="nul-key",
    ),
    pytest.param(
        '{"event": {"event_type": "x' + LONE + '"}}',
        "body.event.event_type: contains a lone surrogate (U+D800)",
        id="lone-surrogate",
    ),
    pytest.param(
        '{"event": {"event_type": "x", "session_id": "s\\udfff"}, "retries": 0}',
        "body.event.session_id: contains a lone surrogate (U+DFFF)",
        id="lone-low-surrogate",
    ),
]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "metadata.db")
    return str(request.getfixturevalue("pg_url"))


@pytest.mark.parametrize(("body", "detail"), EVENT_CASES)
async def test_deliver_refuses_unstorable_event(
    make_client: AppFactory, emulators: EmulatorServer, store_url: str, body: str, detail: str
) -> None:
    async with make_client(store_url=store_url) as client:
        assert (await client.post("/integrations", json=SPLUNK_INTEGRATION)).status_code == 200
        resp = await client.post(
            "/integrations/splunk/deliver", content=_raw(body), headers={"content-type": "application/json"}
        )
        err = assert_error(resp, 422, "invalid_request")
        assert detail in err["detail"]
        assert "\x00" not in resp.text and "\\u0000" not in resp.text
        jobs = (await client.get("/jobs")).json()
        assert jobs["count"] == 0, jobs
        assert emulators.hub.received("splunk") == []
        # the same delivery without the bad character goes through (the check is not a blanket refusal)
        ok = await client.post("/integrations/splunk/deliver", json={"event": SEED_EVENT, "retries": 0})
        assert ok.status_code == 200 and ok.json()["success"] is True, ok.text


def _nul(record: dict[str, Any], *path: str | int) -> bytes:
    """The record as JSON text with ``\\u0000`` appended to the text at ``path``."""
    node: Any = record
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = str(node[path[-1]]) + "\x00"
    return json.dumps(record).encode()


@pytest.mark.parametrize(
    ("route", "body", "detail"),
    [
        (
            "/promotion-executions",
            lambda: _nul(load(PROMOTION), "gates", 0, "name"),
            "body.gates[0].name: contains a NUL",
        ),
        ("/rollback-executions", lambda: _nul(load(ROLLBACK), "reason"), "body.reason: contains a NUL"),
        (
            "/endpoint-management-exports",
            lambda: _nul(load(EXPORT), "artifacts", 0, "path"),
            "body.artifacts[0].path: contains a NUL",
        ),
        (
            "/integrations",
            lambda: json.dumps({**SPLUNK_INTEGRATION, "display_name": "Splunk\ud800"}).encode(),
            "body.display_name: contains a lone surrogate",
        ),
        (
            "/integrations",
            lambda: json.dumps({**SPLUNK_INTEGRATION, "labels": {"t\x00": "x"}}).encode(),
            "body.labels: has a key that contains a NUL",
        ),
    ],
)
async def test_register_refuses_unstorable_records(
    client: httpx.AsyncClient, route: str, body: Any, detail: str
) -> None:
    resp = await client.post(route, content=body(), headers={"content-type": "application/json"})
    err = assert_error(resp, 422, "invalid_request")
    assert detail in err["detail"], err


@pytest.mark.parametrize(
    "route",
    [
        "/promotion-executions/rpe_prod/audit-export/deliver",
        "/rollback-executions/rre_prod/deliver",
        "/endpoint-management-exports/eme_stable/publish",
    ],
)
@pytest.mark.parametrize("bad", [NUL, LONE])
async def test_release_deliver_bodies_are_checked(
    seeded: httpx.AsyncClient, emulators: EmulatorServer, route: str, bad: str
) -> None:
    body = ('{"provider": "webhook' + bad + '", "retries": 0}').encode()
    resp = await seeded.post(route, content=body, headers={"content-type": "application/json"})
    err = assert_error(resp, 422, "invalid_request")
    assert err["detail"].startswith("body.provider: contains a "), err
    assert emulators.hub.received() == []


async def test_redeliver_body_is_checked(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/deliveries/dlv_x/redeliver",
        content=b'{"wait": true, "x\\u0000": 1}',
        headers={"content-type": "application/json"},
    )
    assert "body: has a key that contains a NUL" in assert_error(resp, 422)["detail"]


@pytest.mark.parametrize(
    ("path", "params", "detail"),
    [
        ("/jobs", {"provider": "web\x00hook"}, "query.provider: contains a NUL"),
        ("/release-connector-deliveries", {"provider": "web\x00hook"}, "query.provider: contains a NUL"),
        ("/release-connector-deliveries", {"event_type": "\x00"}, "query.event_type: contains a NUL"),
        ("/endpoint-management-publications", {"provider": "\x00"}, "query.provider: contains a NUL"),
        ("/jobs/job_%00", {}, "path.job_id: contains a NUL"),
        ("/integrations/sp%00lunk", {}, "path.integration_id: contains a NUL"),
        ("/deliveries/dlv_%00", {}, "path.delivery_id: contains a NUL"),
    ],
)
async def test_path_and_query_parameters_are_checked(
    make_client: AppFactory, store_url: str, path: str, params: dict[str, str], detail: str
) -> None:
    async with make_client(store_url=store_url) as client:
        resp = await client.get(path, params=params)
        err = assert_error(resp, 422, "invalid_request")
        assert detail in err["detail"], err


async def test_a_stored_export_with_a_nul_in_an_artifact_path_is_refused_not_a_500(
    make_client: AppFactory, tmp_path: Any, emulators: EmulatorServer
) -> None:
    """A manifest stored before paths were checked (written straight to the store): publishing it is a
    refused publication (422), not a 500 from the file system call."""
    from cavra.store import open_store

    record = load(EXPORT)
    record["export_id"] = "eme_legacy"
    record["artifacts"][0]["path"] = "artifacts/a\x00.pkg"
    url = str(tmp_path / "metadata.db")
    store = open_store(url)
    try:
        store.put_record("endpoint_export", "eme_legacy", record)
    finally:
        store.close()
    async with make_client(store_url=url) as client:
        resp = await client.post("/endpoint-management-exports/eme_legacy/publish", json={"provider": "jamf"})
        err = assert_error(resp, 422)
        assert "its path contains a NUL character" in err["detail"], err
        assert "\x00" not in resp.text
    assert emulators.hub.received("jamf") == []


async def test_access_is_checked_before_the_text(make_client: AppFactory) -> None:
    """A client without a token gets 401, one whose role is not enough 403, before any 422 for the body."""
    body = _raw('{"event": {"event_type": "x' + NUL + '"}}')
    headers = {"content-type": "application/json"}
    async with make_client(tokens=token_set()) as client:
        assert (
            await client.post("/integrations", json=SPLUNK_INTEGRATION, headers=bearer("admin"))
        ).status_code == 200
        assert_error(await client.post("/integrations/splunk/deliver", content=body, headers=headers), 401)
        denied = await client.post(
            "/integrations/splunk/deliver", content=body, headers={**headers, **bearer("auditor")}
        )
        assert_error(denied, 403)
        refused = await client.post(
            "/integrations/splunk/deliver", content=body, headers={**headers, **bearer("operator")}
        )
        assert "body.event.event_type: contains a NUL" in assert_error(refused, 422)["detail"]
        assert_error(await client.get("/jobs", params={"provider": "\x00"}), 401)


def test_published_events_are_checked_too() -> None:
    """Every API router uses the checked route class, so a new router cannot forget the door check."""
    from fastapi.routing import APIRoute

    from cavra.api.app import create_app
    from cavra.api.checked import CheckedRoute
    from cavra.api.settings import ApiSettings

    def walk(routes: list[Any]) -> list[Any]:
        found = []
        for route in routes:
            nested = getattr(route, "original_router", None)  # FastAPI's included routers
            found.extend(walk(list(nested.routes)) if nested is not None else [route])
        return found

    app = create_app(ApiSettings())
    api_routes = [r for r in walk(list(app.routes)) if isinstance(r, APIRoute)]
    assert api_routes
    unchecked = [r.path for r in api_routes if not isinstance(r, CheckedRoute)]
    assert unchecked == []
