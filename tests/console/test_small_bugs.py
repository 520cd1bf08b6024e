"""Issue 14 item 9 and the search filters: console 404 pages, refused publications' anchors, the nav on
publication records, the replay link, auto-refresh, the skip link, readable row links, more filters and
filters that contradict each other."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from cavra.config import load_config
from cavra.delivery.replay import redeliver
from cavra.governance import service as governance
from cavra.governance.events import PublicationRefused

from .conftest import EXPORT, POLICY, Seed, load, page


async def test_unknown_console_path_is_a_console_404_page(console: httpx.AsyncClient) -> None:
    for path in ("/console/nosuch", "/console/deliveries/x/y", "/console/integrations/x"):
        resp = await console.get(path)
        assert resp.status_code == 404, path
        assert resp.headers["content-type"].startswith("text/html")
        assert "Content-Security-Policy" in resp.headers
        assert "<h1>Not found</h1>" in resp.text and "auditor-console" in resp.text
    # an API path stays the API's JSON
    api = await console.get("/nosuch")
    assert api.status_code == 404 and api.headers["content-type"].startswith("application/json")
    # a known page asked with a trailing slash is redirected to it, relatively
    slash = await console.get("/console/deliveries/?provider=splunk")
    assert slash.status_code == 307 and slash.headers["location"] == "/console/deliveries?provider=splunk"
    # a POST-only console address opened with GET is 405
    assert (await console.get("/console/logout")).status_code == 405


async def test_refused_publication_row_links_to_an_anchor_that_exists(
    console: httpx.AsyncClient, seed: Seed, tmp_path: Path
) -> None:
    loaded = load_config(str(seed.config_path), seed.env)
    with seed.store() as store, pytest.raises(PublicationRefused) as refused:
        await governance.publish_endpoint_export(
            store, loaded, load(EXPORT), provider="jamf", retries=0, base_dir=tmp_path, policy=POLICY
        )
    delivery_id = refused.value.delivery_id
    assert delivery_id
    doc = page(await console.get("/console/publications"))
    href = f"/console/deliveries/{delivery_id}#p-jamf"
    assert href in doc.hrefs()
    record = page(await console.get(f"/console/deliveries/{delivery_id}"))
    assert "p-jamf" in {e.attrs.get("id") for e in record.elements}
    # a publication record's nav marks Publications, and its crumbs lead there
    current = [e for e in record.elements if e.tag == "a" and e.attrs.get("aria-current") == "page"]
    assert [e.attrs["href"] for e in current] == ["/console/publications"]
    assert record.link(text="Publications") == "/console/publications"


async def test_replay_of_is_a_link(console: httpx.AsyncClient, seed: Seed) -> None:
    loaded = load_config(str(seed.config_path), seed.env)
    original = seed.ids["page0"]  # a finished job (the rollback's is queued for a retry)
    with seed.store() as store:
        sub = await redeliver(
            store, original, runtime=governance.delivery_runtime(), config=loaded, retry_base_delay=0.01
        )
    assert sub.done
    new_id = sub.documents[0]["id"]
    doc = page(await console.get(f"/console/deliveries/{new_id}"))
    assert doc.link(cls="replay-of") == f"/console/deliveries/{original}"


async def test_auto_refresh_is_a_toggle(console: httpx.AsyncClient) -> None:
    off = await console.get("/console/deliveries?provider=webhook")
    assert 'http-equiv="refresh"' not in off.text
    toggle = page(off).link(cls="refresh-toggle")
    assert toggle == "/console/deliveries?provider=webhook&refresh=on"
    on = await console.get(toggle)
    assert '<meta http-equiv="refresh" content="30">' in on.text
    assert page(on).link(cls="refresh-toggle") == "/console/deliveries?provider=webhook"
    # a detail page does not refresh itself
    assert "refresh-toggle" not in (await console.get("/console/integrations")).text


async def test_skip_link_and_readable_row_links(console: httpx.AsyncClient, seed: Seed) -> None:
    resp = await console.get("/console/deliveries?provider=webhook&status=failed")
    doc = page(resp)
    assert doc.links[0].attrs["href"] == "#main" and doc.links[0].text == "Skip to content"
    assert "main" in {e.attrs.get("id") for e in doc.elements if e.tag == "main"}
    row_links = [a for a in doc.links if a.attrs.get("href", "").startswith("/console/deliveries/dlv_")]
    assert row_links
    label = row_links[0].attrs["aria-label"]
    assert label.startswith("webhook delivery, failed, cavra.release.rollback_execution, ") and "UTC" in label


async def test_more_filters(console: httpx.AsyncClient, seed: Seed) -> None:
    with seed.store() as store:
        rollback = governance.get_delivery(store, seed.ids["rollback"])
    cases = {
        f"event_id={rollback['event_id']}": 1,
        "subject_id=rre_prod": 1,
        "integration_id=hook": 5,
        "since=2000-01-01T00:00&until=2100-01-01T00:00": None,
        "until=2000-01-01T00:00": 0,
    }
    for query, expected in cases.items():
        resp = await console.get(f"/console/deliveries?{query}&limit=500")
        assert resp.status_code == 200, (query, resp.text)
        rows = page(resp).rows("history")
        if expected is None:
            assert len(rows) >= 10, query
        else:
            assert len(rows) == expected, query


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("success=true&status=failed", "delivered = yes contradicts status = failed"),
        ("success=false&status=delivered", "delivered = no contradicts status = delivered"),
        ("since=2026-05-02T00:00&until=2026-05-01T00:00", "since must be before until"),
        ("since=yesterday", "since: not a time"),
    ],
)
async def test_contradictory_filters_say_so(console: httpx.AsyncClient, query: str, says: str) -> None:
    resp = await console.get(f"/console/deliveries?{query}")
    assert resp.status_code == 422
    assert says in resp.text
    assert "No deliveries match." not in resp.text
