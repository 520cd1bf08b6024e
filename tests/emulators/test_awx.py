"""The AWX emulator: auth, templates (404/405), prompts and ignored_fields, surveys, job state progression."""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp
import pytest

from cavra.emulators import awx
from cavra.emulators.framework import Fault
from cavra.emulators.server import EmulatorServer

BEARER = {"Authorization": f"Bearer {awx.DEMO_TOKEN}"}
LAUNCH = "/awx/api/v2/job_templates/{}/launch/"


async def call(
    srv: EmulatorServer, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any
) -> tuple[int, Any, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, srv.base_url + path, headers=headers or {}, **kw) as r,
    ):
        return r.status, await r.json(), r.headers


def templates(**template: Any) -> dict[str, Any]:
    return {"awx": {"templates": {7: {"name": "t", "ask_variables_on_launch": True, **template}}}}


async def test_launch_then_poll_until_successful() -> None:
    async with EmulatorServer(providers=["awx"], overrides=templates(polls_to_finish=3)) as srv:
        extra = {
            "cavra_export_id": "eme_test",
            "cavra_artifacts": [{"name": "a", "sha256": "0" * 64, "size": 1}],
        }
        status, body, headers = await call(srv, "POST", LAUNCH.format(7), BEARER, json={"extra_vars": extra})
        assert status == 201
        assert body["job"] == body["id"]
        assert body["status"] == "pending"
        assert body["ignored_fields"] == {}
        assert headers["Location"] == f"/awx/api/v2/jobs/{body['job']}/"
        assert json.loads(body["extra_vars"]) == extra
        seen = []
        for _ in range(3):
            status, job, _ = await call(srv, "GET", headers["Location"], BEARER)
            assert status == 200
            seen.append(job["status"])
        assert seen == ["running", "running", "successful"]
        assert job["failed"] is False
        assert job["finished"] is not None
        status, job, _ = await call(srv, "GET", headers["Location"], BEARER)
        assert job["status"] == "successful"  # final states stay final


@pytest.mark.parametrize("outcome", ["failed", "error", "canceled"])
async def test_scripted_outcomes(outcome: str) -> None:
    async with EmulatorServer(
        providers=["awx"], overrides=templates(outcome=outcome, polls_to_finish=1)
    ) as srv:
        _, body, _ = await call(srv, "POST", LAUNCH.format(7), BEARER, json={})
        _, job, _ = await call(srv, "GET", f"/awx/api/v2/jobs/{body['job']}/", BEARER)
        assert job["status"] == outcome
        assert job["failed"] is (outcome in ("failed", "error"))


async def test_extra_vars_may_be_a_json_or_yaml_string() -> None:
    async with EmulatorServer(providers=["awx"], overrides=templates()) as srv:
        _, body, _ = await call(srv, "POST", LAUNCH.format(7), BEARER, json={"extra_vars": '{"a": 1}'})
        assert json.loads(body["extra_vars"]) == {"a": 1}
        _, body, _ = await call(srv, "POST", LAUNCH.format(7), BEARER, json={"extra_vars": "a: 2\nb: x\n"})
        assert json.loads(body["extra_vars"]) == {"a": 2, "b": "x"}
        status, body, _ = await call(srv, "POST", LAUNCH.format(7), BEARER, json={"extra_vars": "[1, 2"})
        assert status == 400
        assert "extra_vars" in body


async def test_fields_not_prompted_for_are_ignored_not_rejected() -> None:
    async with EmulatorServer(providers=["awx"], overrides=templates(ask_variables_on_launch=False)) as srv:
        status, body, _ = await call(
            srv, "POST", LAUNCH.format(7), BEARER, json={"extra_vars": {"a": 1}, "limit": "web*"}
        )
        assert status == 201
        assert body["ignored_fields"] == {"extra_vars": {"a": 1}, "limit": "web*"}
        assert json.loads(body["extra_vars"]) == {}


async def test_survey_variables_are_required_and_accepted() -> None:
    survey = [{"variable": "cavra_export_id", "required": True}, {"variable": "note", "required": False}]
    overrides = templates(ask_variables_on_launch=False, survey=survey)
    async with EmulatorServer(providers=["awx"], overrides=overrides) as srv:
        status, body, _ = await call(
            srv, "POST", LAUNCH.format(7), BEARER, json={"extra_vars": {"note": "x"}}
        )
        assert status == 400
        assert body["variables_needed_to_start"] == ["'cavra_export_id' value missing"]
        status, body, _ = await call(
            srv, "POST", LAUNCH.format(7), BEARER, json={"extra_vars": {"cavra_export_id": "e", "other": 1}}
        )
        assert status == 201
        assert json.loads(body["extra_vars"]) == {"cavra_export_id": "e"}
        assert body["ignored_fields"] == {"extra_vars": {"other": 1}}
        status, reqs, _ = await call(srv, "GET", LAUNCH.format(7), BEARER)
        assert reqs["variables_needed_to_start"] == ["cavra_export_id"]


async def test_unknown_template_404_unlaunchable_405_bad_json_400() -> None:
    async with EmulatorServer(providers=["awx"], overrides=templates(launchable=False)) as srv:
        status, body, _ = await call(srv, "POST", LAUNCH.format(99), BEARER, json={})
        assert status == 404
        assert body == {"detail": "Not found."}
        status, body, _ = await call(srv, "POST", LAUNCH.format(7), BEARER, json={})
        assert status == 405
        assert "detail" in body
        async with EmulatorServer(providers=["awx"]) as ok:
            status, body, _ = await call(
                ok,
                "POST",
                LAUNCH.format(awx.DEMO_TEMPLATE_ID),
                {**BEARER, "Content-Type": "application/json"},
                data=b"{nope",
            )
            assert status == 400
            assert body["detail"].startswith("JSON parse error")
            assert (await call(ok, "GET", "/awx/api/v2/jobs/12345/", BEARER))[0] == 404


async def test_auth_bearer_or_basic_else_401_detail() -> None:
    async with EmulatorServer(providers=["awx"]) as srv:
        path = LAUNCH.format(awx.DEMO_TEMPLATE_ID)
        status, body, headers = await call(srv, "POST", path, json={})
        assert status == 401
        assert body == {"detail": "Authentication credentials were not provided."}
        assert "WWW-Authenticate" in headers
        assert (await call(srv, "POST", path, {"Authorization": "Bearer wrong"}, json={}))[0] == 401
        basic = base64.b64encode(f"{awx.DEMO_USERNAME}:{awx.DEMO_PASSWORD}".encode()).decode()
        assert (await call(srv, "POST", path, {"Authorization": f"Basic {basic}"}, json={}))[0] == 201
        wrong = base64.b64encode(f"{awx.DEMO_USERNAME}:nope".encode()).decode()
        status, body, _ = await call(srv, "POST", path, {"Authorization": f"Basic {wrong}"}, json={})
        assert status == 401
        assert body["detail"] == "Invalid username/password."
        assert (await call(srv, "GET", "/awx/api/v2/ping/"))[0] == 200
        assert (await call(srv, "GET", "/awx/api/v2/me/"))[0] == 401


async def test_reset_forgets_jobs() -> None:
    async with EmulatorServer(providers=["awx"]) as srv:
        await call(srv, "POST", LAUNCH.format(awx.DEMO_TEMPLATE_ID), BEARER, json={})
        assert awx.state(srv.hub).jobs
        srv.hub.reset()
        assert awx.state(srv.hub).jobs == {}


def test_demo_config_targets_linux() -> None:
    entry, env = awx.demo_config("http://127.0.0.1:9", awx.Settings())
    assert entry is not None
    assert entry["provider"] == "linux"
    assert entry["job_template_id"] == awx.DEMO_TEMPLATE_ID
    assert env == {"AWX_URL": "http://127.0.0.1:9/awx", "AWX_TOKEN": awx.DEMO_TOKEN}


JOBS = "/awx/api/v2/job_templates/{}/jobs/"


async def launch_jobs(srv: EmulatorServer, keys: list[str], template: int = 7) -> list[int]:
    ids = []
    for key in keys:
        status, body, _ = await call(
            srv, "POST", LAUNCH.format(template), BEARER, json={"extra_vars": {"cavra_delivery_key": key}}
        )
        assert status == 201
        ids.append(body["id"])
    return ids


async def test_template_jobs_list_pages_like_the_controller() -> None:
    two = {"awx": {"templates": {7: {"name": "t", "ask_variables_on_launch": True}, 8: {"name": "u"}}}}
    async with EmulatorServer(providers=["awx"], overrides=two) as srv:
        ids = await launch_jobs(srv, ["k1", "k2", "k3"])
        (other,) = await launch_jobs(srv, ["k9"], template=8)
        status, page, _ = await call(srv, "GET", JOBS.format(7) + "?page_size=2&order_by=-created", BEARER)
        assert status == 200
        assert set(page) == {"count", "next", "previous", "results"}
        assert page["count"] == 3 and page["previous"] is None
        assert [j["id"] for j in page["results"]] == ids[::-1][:2]  # newest first
        assert page["next"] == JOBS.format(7) + "?page_size=2&order_by=-created&page=2"
        status, last, _ = await call(srv, "GET", page["next"], BEARER)
        assert [j["id"] for j in last["results"]] == [ids[0]]
        assert last["next"] is None
        assert last["previous"] == JOBS.format(7) + "?page_size=2&order_by=-created"
        listed = last["results"][0]
        assert listed["job_template"] == 7 and listed["type"] == "job"
        assert json.loads(listed["extra_vars"]) == {"cavra_delivery_key": "k1"}  # a JSON string
        assert (await call(srv, "GET", page["next"].replace("page=2", "page=3"), BEARER))[1] == {
            "detail": "Invalid page."
        }
        # the global list filters by template; the default order is by id
        _, everything, _ = await call(srv, "GET", "/awx/api/v2/jobs/", BEARER)
        assert [j["id"] for j in everything["results"]] == [*ids, other]
        _, only8, _ = await call(srv, "GET", "/awx/api/v2/jobs/?job_template=8", BEARER)
        assert [j["id"] for j in only8["results"]] == [other]
        # listing does not move jobs on
        assert {j["status"] for j in everything["results"]} == {"pending"}


async def test_job_list_filters_and_the_extra_vars_filter_is_refused() -> None:
    async with EmulatorServer(providers=["awx"], overrides=templates(polls_to_finish=1)) as srv:
        ids = await launch_jobs(srv, ["k1", "k2"])
        await call(srv, "GET", f"/awx/api/v2/jobs/{ids[0]}/", BEARER)  # the first job finishes
        base = JOBS.format(7)

        async def listed(query: str) -> list[int]:
            status, body, _ = await call(srv, "GET", base + query, BEARER)
            assert status == 200, body
            return [j["id"] for j in body["results"]]

        assert await listed("?status=successful") == [ids[0]]
        assert await listed("?status__in=pending,running") == [ids[1]]
        assert await listed(f"?id__gt={ids[0]}") == [ids[1]]
        assert await listed("?finished__isnull=true") == [ids[1]]
        assert await listed("?created__gte=2000-01-01T00:00:00Z") == ids
        assert await listed("?created__gte=2999-01-01T00:00:00Z") == []
        assert await listed("?name__icontains=T&search=t") == ids
        for query in ("?extra_vars__contains=k1", "?extra_vars__icontains=k1", "?extra_vars=x"):
            status, body, _ = await call(srv, "GET", base + query, BEARER)
            assert (status, body) == (403, {"detail": "Filtering on extra_vars is not allowed."})
        assert (await call(srv, "GET", base + "?nope=1", BEARER))[0] == 400
        assert (await call(srv, "GET", base + "?order_by=nope", BEARER))[0] == 400
        assert (await call(srv, "GET", base + "?created__gte=yesterday", BEARER))[0] == 400


async def test_job_lists_need_auth_and_a_known_template() -> None:
    async with EmulatorServer(providers=["awx"]) as srv:
        path = JOBS.format(awx.DEMO_TEMPLATE_ID)
        status, body, headers = await call(srv, "GET", path)
        assert status == 401 and "WWW-Authenticate" in headers
        assert (await call(srv, "GET", "/awx/api/v2/jobs/", {"Authorization": "Bearer wrong"}))[0] == 401
        assert (await call(srv, "GET", JOBS.format(99), BEARER))[1] == {"detail": "Not found."}
        status, body, _ = await call(srv, "GET", path, BEARER)
        assert (status, body) == (200, {"count": 0, "next": None, "previous": None, "results": []})


async def test_lost_launch_answer_fault_starts_the_job() -> None:
    async with EmulatorServer(providers=["awx"]) as srv:
        srv.hub.add_fault("awx", Fault(drop=True, after_handler=True))
        with pytest.raises(aiohttp.ClientError):
            await call(
                srv, "POST", LAUNCH.format(awx.DEMO_TEMPLATE_ID), BEARER, json={"extra_vars": {"a": 1}}
            )
        _, page, _ = await call(srv, "GET", JOBS.format(awx.DEMO_TEMPLATE_ID), BEARER)
        assert page["count"] == 1
        assert json.loads(page["results"][0]["extra_vars"]) == {"a": 1}


# -- the API root and the platform gateway mode ------------------------------------------------------------
async def test_controller_root_names_the_v2_api() -> None:
    async with EmulatorServer(providers=["awx"]) as srv:
        status, body, _ = await call(srv, "GET", "/awx/api/")
    assert status == 200
    assert (body["description"], body["current_version"]) == ("AWX REST API", "/api/v2/")


async def test_gateway_mode_serves_the_controller_only_at_api_controller_v2() -> None:
    overrides = templates()
    overrides["awx"]["gateway"] = True
    async with EmulatorServer(providers=["awx"], overrides=overrides) as srv:
        status, root, _ = await call(srv, "GET", "/awx/api/")
        assert status == 200 and root["description"] == "AAP gateway REST API"
        assert root["apis"]["controller"] == "/api/controller/"
        status, controller, _ = await call(srv, "GET", "/awx/api/controller/")
        assert controller["current_version"] == "/api/controller/v2/"
        # the old direct paths are not routed by the gateway
        async with (
            aiohttp.ClientSession() as http,
            http.post(srv.base_url + LAUNCH.format(7), headers=BEARER, json={}) as old,
        ):
            assert old.status == 404 and old.content_type == "text/html"
        launch = "/awx/api/controller/v2/job_templates/7/launch/"
        status, body, headers = await call(srv, "POST", launch, BEARER, json={"extra_vars": {"a": 1}})
        assert status == 201
        assert headers["Location"] == f"/awx/api/controller/v2/jobs/{body['job']}/"
        status, job, _ = await call(srv, "GET", headers["Location"], BEARER)
        assert (status, job["id"]) == (200, body["job"])
        status, jobs, _ = await call(srv, "GET", "/awx/api/controller/v2/job_templates/7/jobs/", BEARER)
        assert jobs["count"] == 1 and jobs["results"][0]["url"] == headers["Location"]
