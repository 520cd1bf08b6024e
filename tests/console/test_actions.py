"""Console actions (issue 14 item 1): operator and admin only, POST forms with a CSRF token and an origin
check, each recorded in the audit trail the console lists; an auditor sees no button and a forged POST
changes nothing. ``POST /deliveries/replay``: the bulk replay over the API."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from cavra.api.auth import Role
from cavra.config import load_config
from cavra.emulators.framework import Fault
from cavra.governance import service as governance

from .conftest import BASE_URL, PAGE_EVENT, POLICY, ConsoleFactory, Seed, bearer, page

ORIGIN = {"Origin": BASE_URL}
FORM = {"content-type": "application/x-www-form-urlencoded"}
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@pytest.fixture
async def operator(make_console: ConsoleFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with make_console() as c:
        c.headers.update(bearer("operator"))
        yield c


def csrf_of(resp: httpx.Response) -> str:
    found = CSRF.search(resp.text)
    assert found, "no action form on the page"
    return found.group(1)


async def post(c: httpx.AsyncClient, path: str, fields: dict[str, str], **headers: str) -> httpx.Response:
    return await c.post(path, data=fields, headers={**ORIGIN, **FORM, **headers})


def audit_entries(seed: Seed) -> list[dict[str, object]]:
    with seed.store() as store:
        return store.list_records("console_action")


async def _failed_job(seed: Seed) -> str:
    """An integration delivery the provider refused (400): its job has failed for good."""
    loaded = load_config(str(seed.config_path), seed.env)
    with seed.store() as store:
        seed.srv.hub.add_fault("webhook", Fault(status=400, count=1))
        event = {"event_type": PAGE_EVENT, "session_id": "refused"}
        done = await governance.deliver_integration(store, loaded, "hook", event, retries=0, policy=POLICY)
    assert done["success"] is False
    return str(done["id"])


@pytest.mark.parametrize("role", ["auditor", "operator", "admin"])
async def test_only_operators_and_admins_see_action_buttons(
    make_console: ConsoleFactory, seed: Seed, role: Role
) -> None:
    async with make_console() as c:
        c.headers.update(bearer(role))
        pages = ["/console", "/console/queue", f"/console/deliveries/{seed.ids['page0']}"]
        for path in pages:
            resp = await c.get(path)
            assert resp.status_code == 200
            has_forms = 'action="/console/actions/' in resp.text
            assert has_forms is (role != "auditor"), (role, path)
            assert ('name="csrf"' in resp.text) is (role != "auditor")


async def test_redeliver_is_queued_and_audited(operator: httpx.AsyncClient, seed: Seed) -> None:
    delivery_id = seed.ids["page0"]
    form = await operator.get(f"/console/deliveries/{delivery_id}")
    resp = await post(
        operator, "/console/actions/redeliver", {"csrf": csrf_of(form), "delivery_id": delivery_id}
    )
    assert resp.status_code == 200, resp.text
    assert "Done: redeliver" in resp.text
    with seed.store() as store:
        queued = governance.queue_overview(store)["queued"]
    assert [j["replay_of"] for j in queued if j["replay_of"]] == [delivery_id]
    [entry] = audit_entries(seed)
    assert entry["who"] == "operator-console" and entry["role"] == "operator"
    assert entry["action"] == "redeliver" and entry["target"] == delivery_id and entry["outcome"] == "done"
    rows = page(await operator.get("/console/audit")).rows("audit")
    assert rows[0][1] == "operator-console operator" and rows[0][2] == "redeliver"


async def test_forged_posts_are_refused_and_change_nothing(
    make_console: ConsoleFactory, operator: httpx.AsyncClient, seed: Seed
) -> None:
    delivery_id = seed.ids["page0"]
    token = csrf_of(await operator.get(f"/console/deliveries/{delivery_id}"))
    fields = {"csrf": token, "delivery_id": delivery_id}
    # no token, a wrong token, another site's origin, no origin, not a form
    assert (
        await post(operator, "/console/actions/redeliver", {"delivery_id": delivery_id})
    ).status_code == 403
    assert (
        await post(operator, "/console/actions/redeliver", {**fields, "csrf": "0" * 64})
    ).status_code == 403
    cross = await post(operator, "/console/actions/redeliver", fields, Origin="http://evil.test")
    assert cross.status_code == 403
    bare = await operator.post("/console/actions/redeliver", data=fields, headers=FORM)
    assert bare.status_code == 403
    as_json = await operator.post("/console/actions/redeliver", json=fields, headers=ORIGIN)
    assert as_json.status_code == 415
    # another caller's token does not work for this one (it is bound to the caller's identity)
    async with make_console() as admin:
        admin.headers.update(bearer("admin"))
        assert (await post(admin, "/console/actions/redeliver", fields)).status_code == 403
    # an auditor may not act, even with an operator's token value in the form
    async with make_console() as auditor:
        auditor.headers.update(bearer("auditor"))
        refused = await post(auditor, "/console/actions/redeliver", fields)
        assert refused.status_code == 403 and "operator or admin" in refused.text
        assert (
            await post(auditor, "/console/actions/pause", {**fields, "provider": "webhook"})
        ).status_code == 403
    with seed.store() as store:
        assert governance.queue_overview(store)["counts"]["queued"] == 1  # only the seed's rollback
    assert audit_entries(seed) == []


async def test_replay_failed_since(operator: httpx.AsyncClient, seed: Seed) -> None:
    await _failed_job(seed)
    token = csrf_of(await operator.get("/console/queue"))
    fields = {"csrf": token, "since": "2000-01-01T00:00", "states": "both", "provider": "webhook"}
    resp = await post(operator, "/console/actions/replay", fields)
    assert resp.status_code == 200, resp.text
    assert re.search(r"<strong>1</strong> jobs queued \(1 matched", resp.text)
    again = await post(operator, "/console/actions/replay", fields)
    assert re.search(r"<strong>0</strong> jobs queued \(1 matched, 1 already replayed\)", again.text)
    bad = await post(operator, "/console/actions/replay", {**fields, "since": "last week"})
    assert bad.status_code == 422 and "since: not a time" in bad.text
    actions = sorted(str(e["outcome"]) for e in audit_entries(seed))
    assert actions == ["done", "done"]  # the bad form was refused before any service call


async def test_pause_and_resume_a_destination(operator: httpx.AsyncClient, seed: Seed) -> None:
    token = csrf_of(await operator.get("/console/queue"))
    resp = await post(
        operator, "/console/actions/pause", {"csrf": token, "provider": "webhook", "minutes": "60"}
    )
    assert resp.status_code == 200 and "webhook is paused: its jobs wait in the queue until" in resp.text
    with seed.store() as store:
        overview = governance.queue_overview(store)
    [hook] = [b for b in overview["breakers"] if b["provider"] == "webhook"]
    # the operator's pause is its own state, not the provider's Retry-After
    assert hook["pause"]["by"] == "operator-console" and hook["pause"]["until"]
    assert hook["retry_after_until"] is None and overview["paused"] == ["webhook"]
    queue = await operator.get("/console/queue")
    assert 'action="/console/actions/resume"' in queue.text and 'id="paused-note"' in queue.text
    resp = await post(operator, "/console/actions/resume", {"csrf": token, "provider": "webhook"})
    assert resp.status_code == 200 and "webhook delivers again." in resp.text
    with seed.store() as store:
        [hook] = [b for b in governance.queue_overview(store)["breakers"] if b["provider"] == "webhook"]
    assert hook["pause"] is None
    forever = await post(
        operator, "/console/actions/pause", {"csrf": token, "provider": "splunk", "minutes": "0"}
    )
    assert "until it is resumed" in forever.text
    wrong = await post(
        operator, "/console/actions/pause", {"csrf": token, "provider": "webhook", "minutes": "7"}
    )
    assert wrong.status_code == 422
    assert [e["action"] for e in sorted(audit_entries(seed), key=lambda e: str(e["at"]))] == [
        "pause_destination",
        "resume_destination",
        "pause_destination",
    ]


async def test_acknowledge_an_alert(operator: httpx.AsyncClient, seed: Seed) -> None:
    overview = await operator.get("/console")
    key = re.search(r'name="key" value="(rollback_delivery_failed\|webhook\|[^"]+)"', overview.text)
    assert key
    resp = await post(
        operator,
        "/console/actions/silence",
        {"csrf": csrf_of(overview), "key": key.group(1).replace("&#34;", '"'), "hours": "4"},
    )
    assert resp.status_code == 200, resp.text
    after = await operator.get("/console")
    assert "acknowledged by operator-console until" in after.text


async def test_bulk_replay_api(make_console: ConsoleFactory, seed: Seed) -> None:
    await _failed_job(seed)
    async with make_console() as c:
        body = {"since": "2000-01-01T00:00:00Z", "provider": "webhook"}
        assert (await c.post("/deliveries/replay", json=body, headers=bearer("auditor"))).status_code == 403
        dry = await c.post("/deliveries/replay", json={**body, "dry_run": True}, headers=bearer("operator"))
        assert dry.status_code == 200 and dry.json()["matched"] == 1 and dry.json()["queued"] == 0
        resp = await c.post("/deliveries/replay", json=body, headers=bearer("operator"))
        assert resp.status_code == 200, resp.text
        assert resp.json()["queued"] == 1 and resp.json()["items"][0]["provider"] == "webhook"
        window = await c.post(
            "/deliveries/replay",
            json={"since": "2000-01-01T00:00:00Z", "until": "2000-01-02T00:00:00Z"},
            headers=bearer("operator"),
        )
        assert window.json()["matched"] == 0
        bad = await c.post(
            "/deliveries/replay", json={**body, "states": ["queued"]}, headers=bearer("operator")
        )
        assert bad.status_code == 422 and "states" in bad.text
    outcomes = sorted(str(e["outcome"]) for e in audit_entries(seed))
    assert outcomes == ["done", "done", "dry run"]
