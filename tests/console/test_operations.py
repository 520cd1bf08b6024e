"""The failure lifecycle, the queue page, measured health and search (issue 14 items 4, 6, 7)."""

from __future__ import annotations

import httpx

from cavra.config import load_config
from cavra.emulators.framework import Fault
from cavra.governance import service as governance

from .conftest import PAGE_EVENT, POLICY, ROLLBACK, Seed, load, page


async def test_a_failure_says_retrying_then_delivered_later(console: httpx.AsyncClient, seed: Seed) -> None:
    url = "/console/deliveries?provider=webhook&status=failed"
    [row] = page(await console.get(url)).rows("history")
    assert row[-1].startswith("retrying next attempt")  # its outbox job waits for the next attempt
    # the overview lists it first among the latest failures, unresolved
    [failure] = page(await console.get("/console")).rows("history")
    assert failure[-1].startswith("retrying")
    # and the record's own page says so
    detail = await console.get(f"/console/deliveries/{seed.ids['rollback']}")
    assert '<dd class="now"><span class="badge lc-retrying">retrying</span>' in detail.text

    # the same request again runs the queued job now; the emulator's faults are used up: delivered
    loaded = load_config(str(seed.config_path), seed.env)
    with seed.store() as store:
        done = await governance.deliver_rollback_execution(
            store, loaded, load(ROLLBACK), provider="webhook", retries=0, policy=POLICY
        )
    assert done["success"] is True
    doc = page(await console.get(url))
    [row] = doc.rows("history")
    assert row[-1] == "delivered later record"
    assert f"/console/deliveries/{done['id']}#p-webhook" in doc.hrefs()


async def test_latest_failures_put_unresolved_first(seed: Seed) -> None:
    loaded = load_config(str(seed.config_path), seed.env)
    with seed.store() as store:
        seed.srv.hub.add_fault("webhook", Fault(status=400, count=1))
        event = {"event_type": PAGE_EVENT, "session_id": "refused"}
        await governance.deliver_integration(store, loaded, "hook", event, retries=0, policy=POLICY)
        board = governance.integration_delivery_dashboard(store)
        ordered = governance.unresolved_first(store, board["latest_failures"])
    assert [i["lifecycle"]["state"] for i in ordered] == ["failed"]
    assert ordered[0]["lifecycle"].get("job_id")


async def test_queue_page(console: httpx.AsyncClient, seed: Seed) -> None:
    resp = await console.get("/console/queue")
    assert resp.status_code == 200
    doc = page(resp)
    [queued] = doc.rows("queued")
    assert (
        queued[2] == "webhook" and queued[3] == "cavra.release.rollback_execution" and queued[4] == "rre_prod"
    )
    assert queued[0].startswith("in ") or queued[0] == "just now" or queued[0].endswith("ago")
    assert "HTTP 503" in queued[6]
    with seed.store() as store:
        overview = governance.queue_overview(store)
    assert overview["counts"]["queued"] == 1
    cards = resp.text
    assert '<span class="value">1</span><span class="label">queued</span>' in cards
    # filtered to one provider
    other = page(await console.get("/console/queue?provider=sentinel"))
    assert other.rows("queued") == []
    assert "/console/queue" in page(await console.get("/console")).hrefs()  # in the nav


async def test_measured_health_beside_the_declared_one(console: httpx.AsyncClient, seed: Seed) -> None:
    loaded = load_config(str(seed.config_path), seed.env)
    with seed.store() as store:
        governance.upsert_integration(
            store, {"integration_id": "hook", "provider": "webhook", "health_status": "healthy"}
        )
        seed.srv.hub.add_fault("webhook", Fault(status=400, count=3))
        for n in range(3):
            event = {"event_type": PAGE_EVENT, "session_id": f"bad-{n}"}
            await governance.deliver_integration(store, loaded, "hook", event, retries=0, policy=POLICY)
    rows = {r[0].split()[0]: r for r in page(await console.get("/console/integrations")).rows("integrations")}
    assert rows["hook"][4] == "healthy declared failing measured: 3 of 8 failed in 24 h, 3 in a row"


async def test_search_is_case_insensitive_and_by_prefix(console: httpx.AsyncClient, seed: Seed) -> None:
    resp = await console.get("/console/deliveries?provider=WEB&limit=500")
    assert resp.status_code == 200
    assert "provider &#39;WEB&#39; matched webhook" in resp.text
    rows = page(resp).rows("history")
    assert rows and {r[1] for r in rows} == {"webhook"}

    resp = await console.get("/console/deliveries?event_type=CAVRA.CONSOLE&limit=500")
    assert len(page(resp).rows("history")) == 5
    assert f"matched {PAGE_EVENT}" in resp.text

    ambiguous = await console.get("/console/deliveries?event_type=cavra.release")
    assert ambiguous.status_code == 422
    assert "cavra.release.promotion_audit" in ambiguous.text and "type more of it" in ambiguous.text

    # a provider of another kind: says so instead of an unexplained empty page
    none = await console.get("/console/publications?provider=splunk")
    assert "no stored provider starts with &#39;splunk&#39;" in none.text
