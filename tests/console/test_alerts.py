"""Actionable alerts: each names its record and its filtered history, a rollback by its ``rre_`` id, a
provider's state agrees with its alerts, queue alerts stay on the boards they concern, and a breaker probe
time that has passed is not shown as the future."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx

from cavra.governance import service as governance
from cavra.store.jobs import OPEN, Destination

from .conftest import Seed, page


def _alerts(board: dict[str, object], code: str) -> list[dict[str, object]]:
    return [a for a in board["alerts"] if a["code"] == code]  # type: ignore[attr-defined,index]


async def test_rollback_alert_names_the_rollback_and_links_its_record(seed: Seed) -> None:
    with seed.store() as store:
        board = governance.connector_delivery_dashboard(store)
    [alert] = _alerts(board, "rollback_delivery_failed")
    assert alert["message"].startswith("rollback execution rre_prod was not delivered to webhook")  # type: ignore[union-attr]
    assert "evt_" not in str(alert["message"])
    assert alert["subject_id"] == "rre_prod"
    assert alert["delivery_id"] == seed.ids["rollback"]
    assert alert["history"] == {"event_id": alert["event_id"], "provider": "webhook"}
    [failing] = _alerts(board, "provider_delivery_failing")
    assert failing["delivery_id"] == seed.ids["rollback"]
    assert failing["history"] == {"provider": "webhook", "status": "failed"}


async def test_provider_state_agrees_with_its_alerts(seed: Seed) -> None:
    with seed.store() as store:
        board = governance.connector_delivery_dashboard(store)
    states = {p["provider"]: p["state"] for p in board["providers"]}
    # webhook: one failure in a row (a warning) but its rollback alert is critical
    assert states == {"webhook": "critical", "sentinel": "ok"}


async def test_alerts_link_to_record_and_history_in_the_console(
    console: httpx.AsyncClient, seed: Seed
) -> None:
    doc = page(await console.get("/console"))
    rollback = [a for a in doc.links if "alert-record" in a.attrs.get("class", "") and "rre_prod" in a.text]
    assert rollback and rollback[0].attrs["href"] == f"/console/deliveries/{seed.ids['rollback']}#p-webhook"
    history = [a.attrs["href"] for a in doc.links if "alert-history" in a.attrs.get("class", "")]
    assert history
    for href in history:
        parts = urlsplit(href)
        assert parts.path in ("/console/deliveries", "/console/publications")
        resp = await console.get(href)
        assert resp.status_code == 200, href
        assert page(resp).rows("history"), f"{href} shows nothing"
    first = parse_qs(urlsplit(history[0]).query)
    assert first.get("provider") == ["webhook"]
    # the providers table's state is the alert level
    release = {r[0]: r for r in doc.all_rows("providers")[0]}
    assert release["webhook"][8].startswith("critical")


def _open_breaker(seed: Seed, provider: str, probe_at: datetime) -> None:
    def change(dest: Destination, now: datetime) -> None:
        dest.breaker_state = OPEN
        dest.consecutive_failures = 5
        dest.opened_at = now - timedelta(minutes=10)
        dest.probe_at = probe_at

    with seed.store() as store:
        store.update_destination(provider, change)


async def test_queue_alerts_only_on_the_boards_they_concern(seed: Seed) -> None:
    _open_breaker(seed, "sentinel", datetime.now(UTC) + timedelta(minutes=5))
    with seed.store() as store:
        release = governance.connector_delivery_dashboard(store)
        publication = governance.endpoint_publication_dashboard(store)
        integration = governance.integration_delivery_dashboard(store)
        everything = governance.delivery_dashboard(store)
    [paused] = _alerts(release, "delivery_paused")
    assert paused["provider"] == "sentinel" and "next probe at" in str(paused["message"])
    assert paused["history"] == {"provider": "sentinel", "status": "failed"}
    assert _alerts(publication, "delivery_paused") == []
    assert publication["status"] == "ok"
    assert _alerts(integration, "delivery_paused") == []
    assert len(_alerts(everything, "delivery_paused")) == 1
    assert {p["provider"]: p["state"] for p in release["providers"]}["sentinel"] == "critical"


async def test_a_passed_probe_time_is_not_shown_as_future(seed: Seed) -> None:
    _open_breaker(seed, "sentinel", datetime.now(UTC) - timedelta(minutes=3))
    with seed.store() as store:
        [paused] = _alerts(governance.connector_delivery_dashboard(store), "delivery_paused")
    assert "next probe at" not in str(paused["message"])
    assert "a probe has been due since" in str(paused["message"])
