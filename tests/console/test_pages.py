"""Every console page, as an auditor sees it: dashboards and alerts, history with filters and paging,
a delivery's attempts, integrations, publications; errors as pages; everything escaped and local."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from cavra.governance import service as governance

from .conftest import ESCAPED, MALICIOUS, PAGE_EVENT, PAGE_EVENTS, Seed, page

PAGES = ("/console", "/console/deliveries", "/console/publications", "/console/integrations")
ROW_LINK = re.compile(r"^/console/deliveries/(dlv_[0-9a-f]+)#p-([a-z]+)$")


def shown(resp: httpx.Response) -> list[tuple[str, str]]:
    """(delivery id, provider) of each history row, in page order."""
    assert resp.status_code == 200, resp.text
    found = [m.groups() for href in page(resp).hrefs() if (m := ROW_LINK.match(href))]
    return [(str(a), str(b)) for a, b in found]


def expected(seed: Seed, **filters: Any) -> list[tuple[str, str]]:
    with seed.store() as store:
        items = governance.delivery_history(store, limit=500, **filters)["items"]
    return [(i["delivery_id"], i["provider"]) for i in items]


def check_page_hygiene(resp: httpx.Response) -> None:
    """CSP and friends on every page; no script, no inline style, no asset from anywhere else."""
    csp = resp.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["cache-control"] == "no-store"
    assert "<script" not in resp.text.lower()
    doc = page(resp)
    for el in doc.elements:
        assert "style" not in el.attrs, el
        assert not any(k.startswith("on") for k in el.attrs), el
        for attr in ("href", "src", "action"):
            if attr in el.attrs:
                assert el.attrs[attr].startswith(("/", "#")), el
    assert any(
        el.tag == "link" and el.attrs.get("href") == "/console/static/console.css" for el in doc.elements
    )


async def test_every_page_renders_for_an_auditor(console: httpx.AsyncClient, seed: Seed) -> None:
    paths = [*PAGES, *(f"/console/deliveries/{i}" for i in seed.ids.values())]
    for path in paths:
        resp = await console.get(path)
        assert resp.status_code == 200, (path, resp.text)
        check_page_hygiene(resp)
        assert "auditor-console" in resp.text  # who is looking
    css = await console.get("/console/static/console.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "@import" not in css.text and "url(" not in css.text  # nothing loaded from elsewhere
    icon = await console.get("/console/static/favicon.svg")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    assert (await console.get("/console/static/../routes.py")).status_code == 404
    assert (await console.get("/console/static/routes.py")).status_code == 404


async def test_overview_shows_both_dashboards_alerts_and_providers(
    console: httpx.AsyncClient, seed: Seed
) -> None:
    resp = await console.get("/console")
    doc = page(resp)
    alerts = doc.all_rows("alerts")
    assert len(alerts) == 1, "only the release dashboard has alerts"
    codes = {row[1].split()[0]: row for row in alerts[0]}
    critical = codes["rollback_delivery_failed"]
    assert critical[0] == "critical" and critical[2] == "webhook" and critical[4] == "1"
    assert "was not delivered to webhook" in critical[1] and "HTTP 503" in critical[1]
    assert codes["provider_delivery_failing"][0] == "warning"
    # relative ("just now", "12 min ago"), with the exact time on hover
    assert critical[3] == "just now" or critical[3].endswith("ago")
    assert re.search(r'<time datetime="[^"]+Z" title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC">', resp.text)
    # levels are coloured: the row and its badge carry the level's class
    assert 'class="alert alert-critical"' in resp.text
    assert '<span class="badge level-critical">critical</span>' in resp.text
    providers = doc.all_rows("providers")
    release = {r[0]: r for r in providers[0]}
    assert set(release) == {"webhook", "sentinel"}
    assert release["webhook"][1:5] == ["2", "1", "1", "0"] and release["webhook"][5] == "50.0%"
    assert release["webhook"][8] == "critical failing, 1 in a row"  # the state agrees with its alerts
    assert release["sentinel"][5] == "100.0%" and release["sentinel"][8] == "ok"
    publication = {r[0]: r for r in providers[1]}
    assert set(publication) == {"jamf"} and publication["jamf"][2] == "1"
    assert "No alerts." in resp.text  # the publication dashboard
    # the totals and success rate as the façade computes them
    with seed.store() as store:
        board = governance.connector_delivery_dashboard(store)
    assert board["totals"]["deliveries"] == 3 and board["success_rate"] == pytest.approx(2 / 3, abs=1e-3)
    assert '<span class="value">66.7%</span><span class="label">success rate</span>' in resp.text
    assert '<span class="value">1 / 1</span><span class="label">exports published</span>' in resp.text
    # the latest failure links to its record
    failures = doc.rows("history")
    assert len(failures) == 1 and failures[0][1] == "webhook"
    assert f"/console/deliveries/{seed.ids['rollback']}#p-webhook" in doc.hrefs()


PUBLICATION_KIND = "endpoint-management-publication-delivery"
RELEASE_KIND = "release-connector-delivery"
INTEGRATION_KIND = "integration-delivery"
FILTERS: list[tuple[str, dict[str, Any]]] = [
    ("", {}),
    ("provider=webhook", {"provider": "webhook"}),
    ("success=false", {"success": False}),
    ("success=true", {"success": True}),
    ("status=failed", {"status": "failed"}),
    (f"metadata_kind={PUBLICATION_KIND}", {"metadata_kind": PUBLICATION_KIND}),
    (
        f"metadata_kind={RELEASE_KIND}&provider=sentinel",
        {"metadata_kind": RELEASE_KIND, "provider": "sentinel"},
    ),
    (f"event_type={PAGE_EVENT}", {"event_type": PAGE_EVENT}),
    (
        f"metadata_kind={INTEGRATION_KIND}&success=true&provider=splunk",
        {"metadata_kind": INTEGRATION_KIND, "success": True, "provider": "splunk"},
    ),
    ("provider=jamf", {"provider": "jamf"}),
]


async def test_an_unknown_provider_is_said_not_answered_with_no_rows(
    console: httpx.AsyncClient, seed: Seed
) -> None:
    resp = await console.get("/console/deliveries?provider=nobody")
    assert resp.status_code == 422
    assert "provider: unknown provider &#39;nobody&#39;; known providers: splunk" in resp.text


@pytest.mark.parametrize(("query", "filters"), FILTERS)
async def test_history_filters(
    console: httpx.AsyncClient, seed: Seed, query: str, filters: dict[str, Any]
) -> None:
    resp = await console.get(f"/console/deliveries?{query}&limit=500")
    want = expected(seed, **filters)
    assert shown(resp) == want
    rows = page(resp).rows("history")
    assert len(rows) == len(want)
    for row in rows:
        if "provider" in filters:
            assert row[1] == filters["provider"]
        if filters.get("success") is False or filters.get("status") == "failed":
            assert row[3] == "failed"
        if filters.get("success") is True:
            assert row[3] == "delivered"
        if "metadata_kind" in filters:
            assert row[6] == filters["metadata_kind"]
    if not want:
        assert "No deliveries match." in resp.text
    # the form shows the filters it applied
    for name, value in filters.items():
        text = str(value).lower()
        assert f'value="{text}" selected' in resp.text or f'name="{name}" value="{text}"' in resp.text


async def test_history_is_newest_first_and_pages_with_older_links(
    console: httpx.AsyncClient, seed: Seed
) -> None:
    everything = expected(seed)
    assert len(everything) == 10  # 1 + 2 (webhook, sentinel) + 1 + 1 + 5
    with seed.store() as store:
        items = governance.delivery_history(store, limit=500)["items"]
    stamps = [i["created_at"] for i in items]
    assert stamps == sorted(stamps, reverse=True)
    collected: list[tuple[str, str]] = []
    url: str | None = "/console/deliveries?limit=3"
    pages = 0
    while url is not None:
        resp = await console.get(url)
        got = shown(resp)
        assert 0 < len(got) <= 3
        collected += got
        pages += 1
        doc = page(resp)
        if pages > 1:
            assert doc.link(text="Newest") == "/console/deliveries?limit=3"
        url = doc.link(cls="older")
        if url is not None:
            query = parse_qs(urlsplit(url).query)
            assert query["limit"] == ["3"] and len(query["cursor"]) == 1
    assert pages == 4
    assert collected == everything


async def test_older_link_keeps_the_filters(console: httpx.AsyncClient, seed: Seed) -> None:
    want = expected(seed, provider="webhook", success=True)
    assert len(want) == PAGE_EVENTS + 1
    resp = await console.get("/console/deliveries?provider=webhook&success=true&limit=4")
    first = shown(resp)
    older = page(resp).link(cls="older")
    assert older is not None
    assert parse_qs(urlsplit(older).query)["provider"] == ["webhook"]
    second = shown(await console.get(older))
    assert first + second == want


async def test_delivery_detail_shows_attempts_and_chain(console: httpx.AsyncClient, seed: Seed) -> None:
    resp = await console.get(f"/console/deliveries/{seed.ids['retried']}")
    assert resp.status_code == 200
    doc = page(resp)
    with seed.store() as store:
        record = governance.get_delivery(store, seed.ids["retried"])
    attempts = doc.rows("attempts")
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in attempts] == [
        ("1", "send", "503", "retry", "HTTP 503"),
        ("2", "send", "200", "delivered", "HTTP 200"),
    ]
    request_cell = attempts[0][7]
    assert request_cell.startswith("POST http://127.0.0.1:") and "/splunk/services/collector" in request_cell
    assert "Authorization Splunk **REDACTED**" in request_cell
    assert '"code": 0' in attempts[1][8] and attempts[0][8] == "empty"
    assert re.fullmatch(r"\d+\.\d ms", attempts[1][5])  # waited
    assert record["record_sha256"] in resp.text and record["previous_sha256"] in resp.text
    assert f"/console/deliveries/{record['previous_id']}" in doc.hrefs() or record["previous_id"] is None
    assert ESCAPED in resp.text  # the event type, escaped

    # several providers: one record (one job) each, with its section and attempts table; sentinel
    # fetched a token first
    assert seed.ids["promotion-webhook"] != seed.ids["promotion-sentinel"]
    steps = []
    for provider in ("webhook", "sentinel"):
        resp = await console.get(f"/console/deliveries/{seed.ids[f'promotion-{provider}']}")
        tables = page(resp).all_rows("attempts")
        assert len(tables) == 1
        steps.append([row[1] for row in tables[0]])
        assert f'id="p-{provider}"' in resp.text
    assert steps[0] == ["send"]
    assert len(steps[1]) >= 2 and steps[1][0] != "send", steps

    # a failed delivery: its error and every retried attempt
    resp = await console.get(f"/console/deliveries/{seed.ids['rollback']}")
    attempts = page(resp).rows("attempts")
    assert [r[3] for r in attempts] == ["retry", "retry", "retry"]
    assert "gave up after 3 attempts: HTTP 503" in resp.text


async def test_errors_are_pages_not_500s(console: httpx.AsyncClient) -> None:
    resp = await console.get("/console/deliveries/dlv_00000000000000000000000000000000")
    assert resp.status_code == 404 and "not found" in resp.text
    check_page_hygiene(resp)
    assert (await console.get("/console/deliveries/" + "x" * 200)).status_code == 404
    resp = await console.get("/console/deliveries?cursor=not-a-cursor")
    assert resp.status_code == 422 and "not a cursor returned by this history" in html.unescape(resp.text)
    for query in (
        "success=maybe",
        "limit=0",
        "limit=501",
        "status=lost",
        "metadata_kind=bogus",
        "provider=" + "p" * 201,
    ):
        resp = await console.get(f"/console/deliveries?{query}")
        assert resp.status_code == 422, query
        assert "These filters are not valid" in resp.text
        assert page(resp).rows("history") == []
    assert (await console.get("/console/nothing-here")).status_code == 404


async def test_everything_is_escaped(console: httpx.AsyncClient, seed: Seed) -> None:
    reflected = f"/console/deliveries?provider={MALICIOUS}&event_type={MALICIOUS}"
    for path in (
        "/console/deliveries",
        f"/console/deliveries/{seed.ids['retried']}",
        "/console/integrations",
        reflected,
        f"/console/publications?provider={MALICIOUS}",
    ):
        resp = await console.get(path)
        # a provider no connector has is refused (422), its value shown escaped like everything else
        assert resp.status_code == (422 if "provider=" in path else 200), path
        assert MALICIOUS not in resp.text and "<script" not in resp.text.lower(), path
        assert ESCAPED in resp.text, path
    resp = await console.get(f"/console/deliveries?event_type={MALICIOUS}")
    assert [row[2] for row in page(resp).rows("history")] == [MALICIOUS]  # the filter matches the raw text


async def test_integrations_page_lists_the_records(console: httpx.AsyncClient, seed: Seed) -> None:
    resp = await console.get("/console/integrations")
    rows = {r[0].split()[0]: r for r in page(resp).rows("integrations")}
    assert set(rows) == {"splunk", "hook"}
    assert rows["splunk"][1:4] == ["splunk", "siem", "active"]
    # declared (nobody set it) beside measured (its one delivery succeeded, after a retry)
    assert rows["splunk"][4] == "unknown declared healthy measured: 0 of 1 failed in 24 h"
    assert rows["splunk"][5] == "team=soc"
    assert "delivered" in rows["hook"][6]
    assert f"/console/deliveries/{seed.ids[f'page{PAGE_EVENTS - 1}']}" in page(resp).hrefs()
    assert "<form" not in resp.text.replace('<form method="post" action="/console/logout"', "")


async def test_publications_page(console: httpx.AsyncClient, seed: Seed) -> None:
    resp = await console.get("/console/publications")
    rows = page(resp).rows("history")
    assert [(r[1], r[3]) for r in rows] == [("jamf", "delivered")]
    assert shown(resp) == [(seed.ids["publication"], "jamf")]
    assert 'name="metadata_kind"' not in resp.text
    resp = await console.get("/console/publications?success=false")
    assert page(resp).rows("history") == []


async def test_console_is_not_in_the_openapi_document(console: httpx.AsyncClient) -> None:
    spec = (await console.get("/openapi.json")).json()
    assert not [p for p in spec["paths"] if p.startswith("/console")]
