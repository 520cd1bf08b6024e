"""Trends (issue 14 item 3, partly): deliveries and failures per bucket as server-rendered SVG, the success
rate, and when the current outage began."""

from __future__ import annotations

import httpx
import pytest

from cavra.governance import service as governance

from .conftest import Seed, page


@pytest.mark.parametrize(("span", "count"), [("24h", 24), ("7d", 28), ("30d", 30)])
async def test_trend_counts_match_the_dashboard(seed: Seed, span: str, count: int) -> None:
    with seed.store() as store:
        trend = governance.delivery_trend(store, span=span)
        everything = governance.delivery_dashboard(store)
        webhook = governance.delivery_trend(store, span=span, provider="webhook")
    assert len(trend["buckets"]) == count
    assert sum(b["total"] for b in trend["buckets"]) == everything["totals"]["deliveries"]
    assert sum(b["failed"] for b in trend["buckets"]) == everything["totals"]["failed"]
    assert trend["buckets"][-1]["total"] == trend["max_total"]  # everything was delivered just now
    # across every kind webhook delivered since its failure (the page events); its release deliveries not
    assert trend["outage_since"] is None
    with seed.store() as store:
        release = governance.delivery_trend(store, span=span, metadata_kind="release-connector-delivery")
    assert release["outage_since"] and release["failing_providers"] == ["webhook"]
    assert sum(b["total"] for b in webhook["buckets"]) == 7  # promotion, rollback and the 5 page events


async def test_trends_page_draws_svg_without_script(console: httpx.AsyncClient, seed: Seed) -> None:
    resp = await console.get("/console/trends?span=7d&provider=webhook")
    assert resp.status_code == 200
    assert "<script" not in resp.text and " style=" not in resp.text  # the CSP stays strict
    assert resp.text.count('<rect class="bad"') == 28
    assert "7 deliveries, 1 failed" in resp.text
    assert "No provider is failing now." in resp.text
    kind = await console.get("/console/trends?metadata_kind=release-connector-delivery")
    assert "Failing now (webhook): the current outage began" in kind.text
    rows = page(resp).rows("trend-table")
    assert rows == [[rows[0][0], "7", "6", "1", "85.7%"]]
    bad = await console.get("/console/trends?span=1y")
    assert bad.status_code == 422
