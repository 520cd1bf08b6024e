"""The Jira emulator (Cloud v3/v2 and Data Center v2), over real loopback HTTP."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from cavra.emulators.framework import Fault
from cavra.emulators.jira import Settings, demo_config, jira_emulator
from cavra.emulators.server import EmulatorServer

EMAIL, TOKEN = "cavra-bot@example.com", "jira-demo-api-token-7f3a"
BASIC = "Basic " + base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()
PAT = "jira-demo-pat-5c1e"
AUTH_401 = {"errorMessages": ["Client must be authenticated to access this resource."], "errors": {}}


def adf(text: str) -> dict[str, Any]:
    return {
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": text}]}],
    }


def fields(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "project": {"key": "OPS"},
        "issuetype": {"name": "Task"},
        "summary": "CAVRA evidence bundle: s-1",
        "description": adf("details"),
        "labels": ["cavra-0123456789abcdef"],
    }
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture
async def server(emulator_factory: Callable[..., EmulatorServer]) -> AsyncIterator[EmulatorServer]:
    async with emulator_factory(providers=["jira"]) as srv:
        yield srv


@pytest.fixture
async def dc_server(emulator_factory: Callable[..., EmulatorServer]) -> AsyncIterator[EmulatorServer]:
    async with emulator_factory(providers=["jira"], overrides={"jira": {"deployment": "datacenter"}}) as srv:
        yield srv


async def call(
    srv: EmulatorServer,
    method: str,
    path: str,
    *,
    body: Any = None,
    auth: str | None = BASIC,
    raw: bytes | None = None,
    content_type: str = "application/json",
    params: dict[str, str] | None = None,
) -> tuple[int, Any, dict[str, str]]:
    headers = {"Content-Type": content_type, "Accept": "application/json"}
    if auth is not None:
        headers["Authorization"] = auth
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, srv.base_url + "/jira" + path, data=data, headers=headers, params=params
        ) as r,
    ):
        text = await r.text()
        try:
            parsed: Any = json.loads(text)
        except ValueError:
            parsed = text
        return r.status, parsed, {k.lower(): v for k, v in r.headers.items()}


async def create(srv: EmulatorServer, version: int = 3, **extra: Any) -> tuple[int, Any, dict[str, str]]:
    return await call(srv, "POST", f"/rest/api/{version}/issue", body={"fields": fields(**extra)})


async def search(srv: EmulatorServer, jql: str, auth: str | None = BASIC, **params: str) -> tuple[int, Any]:
    """A search asking for ``key`` (unless the test names the fields): the default answers ids only."""
    status, body, _ = await call(
        srv, "GET", "/rest/api/3/search/jql", auth=auth, params={"jql": jql, "fields": "key", **params}
    )
    return status, body


# -- create -----------------------------------------------------------------------------------------------
async def test_create_returns_201_with_incrementing_keys(server: EmulatorServer) -> None:
    status, body, _ = await create(server)
    assert status == 201
    assert body["key"] == "OPS-1" and body["id"] == "10000"
    assert body["self"].endswith("/jira/rest/api/3/issue/10000")
    status, body, _ = await create(server)
    assert (status, body["key"], body["id"]) == (201, "OPS-2", "10001")
    status, body, _ = await create(server, project={"key": "SEC"})
    assert body["key"] == "SEC-1"
    assert [i.key for i in jira_emulator(server.hub).store.issues] == ["OPS-1", "OPS-2", "SEC-1"]


@pytest.mark.parametrize(
    "auth",
    [
        None,
        "Basic " + base64.b64encode(f"{EMAIL}:wrong-token".encode()).decode(),
        "Basic " + base64.b64encode(f"other@example.com:{TOKEN}".encode()).decode(),
        "Basic !!notbase64",
        f"Bearer {PAT}",  # a PAT is a Data Center credential; Cloud refuses it
    ],
)
async def test_create_refuses_missing_or_wrong_credentials(server: EmulatorServer, auth: str | None) -> None:
    status, body, _ = await call(server, "POST", "/rest/api/3/issue", body={"fields": fields()}, auth=auth)
    assert (status, body) == (401, AUTH_401)
    assert jira_emulator(server.hub).store.issues == []


async def test_v3_description_must_be_adf_v2_takes_a_string(server: EmulatorServer) -> None:
    status, body, _ = await create(server, description="plain text")
    assert status == 400
    assert body == {
        "errorMessages": [],
        "errors": {"description": "Operation value must be an Atlassian Document"},
    }
    status, body, _ = await create(
        server, description={"type": "doc", "version": 1, "content": [{"type": "text"}]}
    )
    assert status == 400 and "description" in body["errors"]
    status, body, _ = await create(server, version=2, description="plain text")
    assert status == 201 and body["self"].endswith("/rest/api/2/issue/10000")


@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        ({"project": None}, "project", "Specify a valid project ID or key"),
        ({"project": {"key": "NOPE"}}, "project", "valid project is required"),
        ({"issuetype": None}, "issuetype", "Specify an issue type"),
        ({"issuetype": {"name": "Epic"}}, "issuetype", "Specify a valid issue type"),
        ({"summary": None}, "summary", "You must specify a summary of the issue."),
        ({"summary": "   "}, "summary", "You must specify a summary of the issue."),
        ({"summary": "x" * 255}, "summary", "Summary must be less than 255 characters."),
        ({"summary": "two\nlines"}, "summary", "Field 'summary' cannot contain newline characters."),
        ({"labels": ["has space"]}, "labels", "The label 'has space' contains spaces which is invalid."),
        ({"priority": {"name": "Urgent"}}, "priority", "Specify a valid value for priority"),
        (
            {"customfield_99999": "x"},
            "customfield_99999",
            "Field 'customfield_99999' cannot be set. It is not on the appropriate screen, or unknown.",
        ),
    ],
)
async def test_create_field_errors(
    server: EmulatorServer, extra: dict[str, Any], field: str, message: str
) -> None:
    status, body, _ = await create(server, **extra)
    assert status == 400
    assert body["errors"][field] == message
    assert body["errorMessages"] == []


async def test_create_accepts_254_char_summary_priority_custom_field_and_project_id(
    server: EmulatorServer,
) -> None:
    status, _, _ = await create(
        server,
        summary="y" * 254,
        priority={"name": "Highest"},
        customfield_10042="s-1",
        project={"id": "10000"},
    )
    assert status == 201
    issue = jira_emulator(server.hub).store.issues[0]
    assert issue.fields["customfield_10042"] == "s-1" and issue.key == "OPS-1"


async def test_create_needs_json(server: EmulatorServer) -> None:
    status, _, _ = await call(server, "POST", "/rest/api/3/issue", raw=b"fields=1", content_type="text/plain")
    assert status == 415
    status, body, _ = await call(server, "POST", "/rest/api/3/issue", raw=b"{not json")
    assert status == 400 and body["errorMessages"]
    status, body, _ = await call(server, "POST", "/rest/api/3/issue", body={"summary": "no fields"})
    assert status == 400


# -- search -----------------------------------------------------------------------------------------------
async def test_search_by_label_and_project_with_fields(server: EmulatorServer) -> None:
    await create(server)
    await create(server, labels=["other"])
    await create(server, project={"key": "SEC"})
    status, body = await search(
        server, 'project = OPS AND labels = "cavra-0123456789abcdef"', fields="key,labels"
    )
    assert status == 200
    assert [i["key"] for i in body["issues"]] == ["OPS-1"]
    assert body["issues"][0]["fields"] == {"labels": ["cavra-0123456789abcdef"]}
    assert body["isLast"] is True and "nextPageToken" not in body
    status, body = await search(server, 'labels = "cavra-0123456789abcdef" ORDER BY created DESC')
    assert [i["key"] for i in body["issues"]] == ["SEC-1", "OPS-1"]
    assert "fields" not in body["issues"][0]  # only id (and key) unless fields are asked for
    status, body = await search(server, 'project in (OPS, "SEC") AND labels = "nothing-here"')
    assert (status, body["issues"]) == (200, [])


async def test_search_paginates_with_next_page_token(server: EmulatorServer) -> None:
    for _ in range(5):
        await create(server)
    keys: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        params = {"maxResults": "2", **({"nextPageToken": token} if token else {})}
        status, body = await search(server, "project = OPS", **params)
        assert status == 200
        pages += 1
        keys += [i["key"] for i in body["issues"]]
        if body["isLast"]:
            break
        token = body["nextPageToken"]
    assert pages == 3 and keys == [f"OPS-{n}" for n in range(1, 6)]
    status, body = await search(server, "project = OPS", nextPageToken="garbage!")
    assert status == 400


async def test_search_jql_returns_ids_only_unless_fields_are_asked_for(server: EmulatorServer) -> None:
    _, created, _ = await create(server)
    status, body, _ = await call(
        server, "GET", "/rest/api/3/search/jql", auth=BASIC, params={"jql": "project = OPS"}
    )
    assert status == 200 and body["issues"] == [{"id": created["id"]}]
    status, body, _ = await call(
        server, "POST", "/rest/api/3/search/jql", body={"jql": "project = OPS", "fields": ["id"]}
    )
    assert body["issues"] == [{"id": created["id"]}]
    status, body, _ = await call(
        server, "GET", "/rest/api/3/search/jql", params={"jql": "project = OPS", "fields": "key,labels"}
    )
    (issue,) = body["issues"]
    assert (issue["id"], issue["key"]) == (created["id"], "OPS-1") and issue["self"].endswith(
        "/issue/" + created["id"]
    )
    assert issue["fields"] == {"labels": ["cavra-0123456789abcdef"]}


async def test_search_post_variant(server: EmulatorServer) -> None:
    await create(server)
    status, body, _ = await call(
        server,
        "POST",
        "/rest/api/3/search/jql",
        body={"jql": "project = OPS", "fields": ["summary"], "maxResults": 1},
    )
    assert status == 200 and body["issues"][0]["fields"] == {"summary": "CAVRA evidence bundle: s-1"}


@pytest.mark.parametrize(
    ("jql", "fragment"),
    [
        ("", "Unbounded JQL"),
        ("project = NOPE", "does not exist for the field 'project'"),
        ("assignee = bob", "Field 'assignee' does not exist"),
        ("project = OPS OR labels = x", "expecting 'AND'"),
        ("project = OPS ORDER BY rank", "Not able to sort"),
    ],
)
async def test_search_rejects_bad_jql(server: EmulatorServer, jql: str, fragment: str) -> None:
    status, body = await search(server, jql)
    assert status == 400
    assert fragment in body["errorMessages"][0]


async def test_search_bad_max_results(server: EmulatorServer) -> None:
    assert (await search(server, "project = OPS", maxResults="0"))[0] == 400
    assert (await search(server, "project = OPS", maxResults="many"))[0] == 400


async def test_anonymous_search_is_200_and_empty_but_wrong_credentials_401(server: EmulatorServer) -> None:
    await create(server)
    status, body = await search(server, "project = OPS", auth=None)
    assert (status, body["issues"]) == (200, [])
    status, body = await search(server, "project = OPS", auth="Basic " + base64.b64encode(b"x:y").decode())
    assert (status, body) == (401, AUTH_401)


async def test_search_lag_and_reconcile_issues(emulator_factory: Callable[..., EmulatorServer]) -> None:
    async with emulator_factory(providers=["jira"], overrides={"jira": {"search_lag_seconds": 0.3}}) as srv:
        _, created, _ = await create(srv)
        assert (await search(srv, "project = OPS"))[1]["issues"] == []
        status, body = await search(srv, "project = OPS", reconcileIssues=created["id"])
        assert status == 200
        assert [i["key"] for i in body["issues"]] == ["OPS-1"]
        await asyncio.sleep(0.35)
        assert [i["key"] for i in (await search(srv, "project = OPS"))[1]["issues"]] == ["OPS-1"]


@pytest.mark.parametrize("path", ["/rest/api/3/search", "/rest/api/2/search"])
async def test_removed_search_is_410_on_cloud(server: EmulatorServer, path: str) -> None:
    status, body, _ = await call(server, "GET", path, params={"jql": "project = OPS"})
    assert status == 410
    assert "/rest/api/3/search/jql" in body["errorMessages"][0]


# -- comments and reads -----------------------------------------------------------------------------------
async def test_comment_v3_adf_and_v2_string(server: EmulatorServer) -> None:
    await create(server)
    status, body, _ = await call(
        server, "POST", "/rest/api/3/issue/OPS-1/comment", body={"body": adf("again")}
    )
    assert status == 201 and body["id"] and body["self"].endswith(f"/comment/{body['id']}")
    status, body, _ = await call(server, "POST", "/rest/api/3/issue/OPS-1/comment", body={"body": "plain"})
    assert status == 400 and body["errors"]["comment"] == "Operation value must be an Atlassian Document"
    status, body, _ = await call(server, "POST", "/rest/api/3/issue/OPS-1/comment", body={"body": ""})
    assert status == 400 and body["errors"]["comment"] == "Comment body can not be empty!"
    status, _, _ = await call(server, "POST", "/rest/api/2/issue/10000/comment", body={"body": "plain"})
    assert status == 201
    status, body, _ = await call(server, "GET", "/rest/api/3/issue/OPS-1/comment")
    assert status == 200 and body["total"] == 2 and body["comments"][1]["body"] == "plain"
    status, body, _ = await call(server, "GET", "/rest/api/3/issue/OPS-1")
    assert status == 200 and body["fields"]["comment"]["total"] == 2
    assert body["fields"]["labels"] == ["cavra-0123456789abcdef"]


async def test_comment_on_unknown_issue_404_and_needs_auth(server: EmulatorServer) -> None:
    status, body, _ = await call(server, "POST", "/rest/api/3/issue/OPS-99/comment", body={"body": adf("x")})
    assert status == 404 and body["errorMessages"] == [
        "Issue does not exist or you do not have permission to see it."
    ]
    await create(server)
    status, body, _ = await call(
        server, "POST", "/rest/api/3/issue/OPS-1/comment", body={"body": adf("x")}, auth=None
    )
    assert (status, body) == (401, AUTH_401)


async def test_myself(server: EmulatorServer) -> None:
    status, body, _ = await call(server, "GET", "/rest/api/3/myself")
    assert status == 200 and body["emailAddress"] == EMAIL
    assert (await call(server, "GET", "/rest/api/3/myself", auth=None))[0] == 401


# -- Data Center ------------------------------------------------------------------------------------------
async def test_datacenter_bearer_pat_v2_and_search(dc_server: EmulatorServer) -> None:
    bearer = f"Bearer {PAT}"
    status, body, _ = await call(
        dc_server,
        "POST",
        "/rest/api/2/issue",
        body={"fields": fields(description="wiki *text*")},
        auth=bearer,
    )
    assert (status, body["key"]) == (201, "OPS-1")
    status, body, _ = await call(
        dc_server,
        "GET",
        "/rest/api/2/search",
        auth=bearer,
        params={"jql": 'labels = "cavra-0123456789abcdef"'},
    )
    assert status == 200 and body["total"] == 1 and body["issues"][0]["key"] == "OPS-1"
    assert (
        await call(dc_server, "POST", "/rest/api/2/issue", body={"fields": fields()}, auth="Bearer nope")
    )[0] == 401
    # v3 and the Cloud search do not exist on Data Center
    assert (await call(dc_server, "POST", "/rest/api/3/issue", body={"fields": fields()}, auth=bearer))[
        0
    ] == 404
    assert (
        await call(dc_server, "GET", "/rest/api/3/search/jql", auth=bearer, params={"jql": "project = OPS"})
    )[0] == 404
    status, _, _ = await call(
        dc_server, "POST", "/rest/api/2/issue/OPS-1/comment", body={"body": "x"}, auth=bearer
    )
    assert status == 201


# -- rate rule, faults, reset, demo config ----------------------------------------------------------------
async def test_burst_rule_answers_429_with_headers(emulator_factory: Callable[..., EmulatorServer]) -> None:
    overrides = {"jira": {"rate_limit_requests": 2, "retry_after_seconds": 3}}
    async with emulator_factory(providers=["jira"], overrides=overrides) as srv:
        assert (await create(srv))[0] == 201
        assert (await create(srv))[0] == 201
        status, body, headers = await create(srv)
        assert status == 429
        assert headers["retry-after"] == "3"
        assert headers["ratelimit-reason"] == "jira-burst-based"
        assert headers["x-ratelimit-reset"].endswith("Z")
        assert body["errorMessages"]
        assert len(jira_emulator(srv.hub).store.issues) == 2


async def test_lost_response_still_creates_and_reset_forgets(server: EmulatorServer) -> None:
    server.hub.add_fault("jira", Fault(drop=True, after_handler=True))
    with pytest.raises(aiohttp.ClientError):
        await create(server)
    assert [i.key for i in jira_emulator(server.hub).store.issues] == ["OPS-1"]
    server.hub.reset()
    assert jira_emulator(server.hub).store.issues == []
    assert (await create(server))[1]["key"] == "OPS-1"


def test_demo_config_cloud_and_datacenter() -> None:
    entry, env = demo_config("http://127.0.0.1:9", Settings())
    assert entry is not None
    assert entry["url_env"] == "JIRA_URL" and env["JIRA_URL"] == "http://127.0.0.1:9/jira"
    assert (
        entry["email"] == EMAIL
        and entry["api_token_env"] == "JIRA_API_TOKEN"
        and env["JIRA_API_TOKEN"] == TOKEN
    )
    assert entry["project_key"] == "OPS" and entry["issue_type"] == "Task" and entry["allow_http"] is True
    assert "api_token" not in entry and TOKEN not in json.dumps(entry)
    entry, env = demo_config("http://127.0.0.1:9", Settings(deployment="datacenter"))
    assert entry is not None and entry["deployment"] == "datacenter"
    assert entry["token_env"] == "JIRA_PAT" and env["JIRA_PAT"] == PAT
