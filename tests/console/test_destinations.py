"""The destinations page (issue 14): every destination with its state, last delivery, failures and links;
an operator's pause as its own state in the console, ``GET /destinations`` and ``GET /jobs``, set and ended
over the API too (audited); acknowledged alerts on the API's dashboards and the CLI's board."""

from __future__ import annotations

import httpx
from typer.testing import CliRunner

from cavra.cli.main import app as cli
from cavra.governance import service as governance

from .conftest import ConsoleFactory, Seed, bearer, page


async def test_destinations_page_lists_state_last_delivery_and_failures(
    console: httpx.AsyncClient, seed: Seed
) -> None:
    resp = await console.get("/console/destinations")
    assert resp.status_code == 200
    assert "<script" not in resp.text and 'action="/console/actions/' not in resp.text  # an auditor
    rows = {r[0].split()[0]: r for r in page(resp).rows("destinations")}
    with seed.store() as store:
        stats = {s.destination: s for s in store.destination_stats(governance_kinds())}
    hook = rows["webhook"]
    assert hook[4] == str(stats["webhook"].total) and hook[5] == str(stats["webhook"].failed)
    assert hook[2] == "active"  # webhook delivered after its rollback failures
    assert "never" in rows["teams"][3] and rows["teams"][2] == "idle"
    assert 'href="/console/trends?destination=webhook"' in resp.text
    assert 'href="/console/deliveries?destination=webhook"' in resp.text
    history = await console.get("/console/deliveries?destination=webhook")
    assert history.status_code == 200 and 'name="destination" value="webhook"' in history.text
    trend = await console.get("/console/trends?destination=webhook&span=30d")
    assert trend.status_code == 200 and "destination webhook" in trend.text
    assert sum(int(r[1]) for r in page(trend).rows("trend-table")) == stats["webhook"].total


def governance_kinds() -> object:
    from cavra.governance.destinations import REAL_KINDS
    from cavra.store.base import DeliveryFilter

    return DeliveryFilter(metadata_kinds=REAL_KINDS)


async def test_pause_resume_and_acknowledge_over_the_api(make_console: ConsoleFactory, seed: Seed) -> None:
    async with make_console() as c:
        refused = await c.post("/destinations/webhook/pause", json={}, headers=bearer("auditor"))
        assert refused.status_code == 403
        paused = await c.post("/destinations/webhook/pause", json={}, headers=bearer("operator"))
        assert paused.status_code == 200, paused.text
        assert paused.json()["pause"] == {
            "by": "operator-console",
            "at": paused.json()["pause"]["at"],
            "until": None,
        }
        listed = await c.get("/destinations", headers=bearer("auditor"))
        [hook] = [d for d in listed.json()["items"] if d["name"] == "webhook"]
        assert hook["pause"]["by"] == "operator-console" and hook["breaker"]["paused_until"] is None
        jobs = await c.get("/jobs", headers=bearer("auditor"))
        assert [p["destination"] for p in jobs.json()["paused"]] == ["webhook"]
        page_ = await c.get("/console/destinations", headers=bearer("auditor"))
        assert 'paused</span> <span class="muted">by operator-console' in page_.text
        past = await c.post(
            "/destinations/webhook/pause", json={"until": "2000-01-01T00:00:00Z"}, headers=bearer("operator")
        )
        assert past.status_code == 422
        resumed = await c.post("/destinations/webhook/resume", headers=bearer("operator"))
        assert resumed.json() == {
            "destination": "webhook",
            "paused": False,
            "pause": None,
            "was_paused": True,
        }
        assert (await c.get("/jobs", headers=bearer("auditor"))).json()["paused"] == []

        board = (await c.get("/release-connector-deliveries/dashboard", headers=bearer("auditor"))).json()
        [alert] = [a for a in board["alerts"] if a["code"] == "rollback_delivery_failed"]
        assert alert["acknowledged_by"] is None and alert["key"]
        ack = await c.post(
            "/alerts/acknowledge", json={"key": alert["key"], "hours": 2}, headers=bearer("operator")
        )
        assert ack.status_code == 200, ack.text
        board = (await c.get("/release-connector-deliveries/dashboard", headers=bearer("auditor"))).json()
        [alert] = [a for a in board["alerts"] if a["code"] == "rollback_delivery_failed"]
        assert alert["acknowledged_by"] == "operator-console" and alert["acknowledged_until"]
        everything = governance.delivery_dashboard
        with seed.store() as store:
            assert any(a.get("acknowledged_by") for a in everything(store)["alerts"])
    actions = [e["action"] for e in sorted(audit(seed), key=lambda e: str(e["at"]))]
    assert actions == ["pause_destination", "pause_destination", "resume_destination", "silence_alert"]
    assert [e["outcome"][:7] for e in sorted(audit(seed), key=lambda e: str(e["at"]))][1] == "refused"

    result = CliRunner().invoke(
        cli,
        ["release", "connector-delivery-dashboard", "--store", seed.store_url],
        env={**seed.env, "COLUMNS": "300"},
    )
    assert result.exit_code == 0, result.output
    assert "acknowledged by operator-console" in result.output


def audit(seed: Seed) -> list[dict[str, object]]:
    with seed.store() as store:
        return store.list_records("console_action")
