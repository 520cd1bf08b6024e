"""The overview's boards: every kind together, and the integration (SIEM and ChatOps) board."""

from __future__ import annotations

import httpx

from cavra.governance import service as governance

from .conftest import Seed, page


async def test_overview_has_an_integration_board_and_every_kind(
    console: httpx.AsyncClient, seed: Seed
) -> None:
    resp = await console.get("/console")
    assert resp.status_code == 200
    doc = page(resp)
    ids = {e.attrs.get("id") for e in doc.elements}
    assert {"board-all", "board-release", "board-publication", "board-integration"} <= ids
    with seed.store() as store:
        everything = governance.delivery_dashboard(store)
        integration = governance.integration_delivery_dashboard(store)
        release = governance.connector_delivery_dashboard(store)
    # the per-kind summary agrees with the façade's dashboards
    kinds = {r[0]: r for r in doc.rows("kinds")}
    assert kinds["Integration deliveries"][2] == str(integration["totals"]["deliveries"])
    assert kinds["Release connector deliveries"][1] == release["status"]
    assert kinds["Release connector deliveries"][5] == str(len(release["alerts"]))
    assert everything["totals"]["deliveries"] == sum(int(r[2]) for r in kinds.values())
    # the integration board's providers (the third board on the page)
    boards = doc.all_rows("providers")
    assert len(boards) == 3
    assert (
        {r[0] for r in boards[2]}
        == {p["provider"] for p in integration["providers"]}
        == {"splunk", "webhook"}
    )
    assert "/console/deliveries?metadata_kind=integration-delivery" in doc.hrefs()
