"""Dashboards: aggregates per provider delivery, and alerts that reflect the current state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cavra.errors import InputError
from cavra.history import CONNECTOR_DASHBOARD, PUBLICATION_DASHBOARD, dashboard
from cavra.store import Store
from cavra.store.base import iso

from .conftest import make_record

RELEASE = "release-connector-delivery"
PUBLICATION = "endpoint-management-publication-delivery"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ROLLBACK = "cavra.release.rollback_execution"


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _add(store: Store, minute: float, provider: str = "webhook", ok: bool = True, **kw: Any) -> None:
    kind = kw.pop("metadata_kind", RELEASE)
    subject = kw.pop("subject", None)
    store.append_delivery(
        make_record(provider, success=ok, **kw),
        metadata_kind=kind,
        subject_kind="endpoint_export" if subject else None,
        subject_id=subject,
        created_at=_at(minute),
    )


def _alerts(board: dict[str, Any], code: str | None = None) -> list[dict[str, Any]]:
    return [a for a in board["alerts"] if code is None or a["code"] == code]


def test_empty_dashboard(store: Store) -> None:
    board = dashboard(store, metadata_kinds=[RELEASE], now=T0)
    assert board["schema_version"] == CONNECTOR_DASHBOARD
    assert board["totals"]["deliveries"] == 0 and board["success_rate"] is None
    assert board["providers"] == [] and board["alerts"] == [] and board["status"] == "ok"


def test_aggregates_per_provider_delivery(store: Store) -> None:
    _add(store, 0, "webhook", True, attempts=1)
    _add(store, 1, "webhook", False, attempts=3)
    _add(store, 2, "splunk", True, attempts=2, event_type="cavra.evidence_bundle")
    _add(store, 3, "webhook", True, attempts=1)
    _add(store, 4, "jamf", False, status="pending", attempts=1)  # pending: neither succeeded nor failed
    _add(store, 5, "slack", False, metadata_kind="integration-delivery")  # another dashboard's kind
    board = dashboard(store, metadata_kinds=[RELEASE], now=_at(10))

    assert board["totals"] == {
        "deliveries": 5,
        "succeeded": 3,
        "failed": 1,
        "pending": 1,
        "attempts": 8,
        "providers": 3,
    }
    assert board["success_rate"] == 0.6
    webhook = next(p for p in board["providers"] if p["provider"] == "webhook")
    assert webhook == {
        "provider": "webhook",
        "total": 3,
        "succeeded": 2,
        "failed": 1,
        "pending": 0,
        "attempts": 5,
        "success_rate": 0.6667,
        "last_success_at": "2025-03-01T12:03:00.000000Z",
        "last_failure_at": "2025-03-01T12:01:00.000000Z",
        "failing": False,
        "consecutive_failures": 0,
        "state": "warning",  # its failure_rate_high alert: the state agrees with the alerts
    }
    assert [p["provider"] for p in board["providers"]] == ["jamf", "splunk", "webhook"]
    assert board["event_types"][0] == {
        "event_type": "cavra.release.promotion_execution",
        "total": 4,
        "succeeded": 2,
        "failed": 1,
    }
    assert [f["provider"] for f in board["latest_failures"]] == ["webhook"]
    assert board["window"]["deliveries"] == 5 and board["window"]["failed"] == 1


def test_totals_count_pending_separately(store: Store) -> None:
    _add(store, 0, "jamf", False, status="pending")
    _add(store, 1, "jamf", True)
    board = dashboard(store, metadata_kinds=[RELEASE], now=_at(2))
    assert board["totals"] == {
        "deliveries": 2,
        "succeeded": 1,
        "failed": 0,
        "pending": 1,
        "attempts": 2,
        "providers": 1,
    }
    assert board["success_rate"] == 0.5
    assert board["alerts"] == []


def test_latest_failures_are_the_ten_newest(store: Store) -> None:
    for i in range(12):
        _add(store, i, "webhook", False, event_id=f"evt-{i}")
    board = dashboard(store, metadata_kinds=[RELEASE], now=_at(20))
    assert [f["event_id"] for f in board["latest_failures"]] == [f"evt-{i}" for i in range(11, 1, -1)]


def test_failing_provider_alert_raises_escalates_and_clears(store: Store) -> None:
    _add(store, 0, "webhook", True)
    _add(store, 1, "webhook", False, error="HTTP 503 from provider")
    board = dashboard(store, metadata_kinds=[RELEASE], now=_at(2), failure_rate_threshold=1.0)
    [alert] = _alerts(board, "provider_delivery_failing")
    assert alert["level"] == "warning" and alert["provider"] == "webhook"
    assert alert["count"] == 1 and alert["since"] == "2025-03-01T12:01:00.000000Z"
    assert "HTTP 503" in alert["message"]
    assert board["status"] == "warning"

    _add(store, 2, "webhook", False)
    _add(store, 3, "webhook", False, status="pending")  # a pending delivery does not clear it
    _add(store, 4, "webhook", False)
    _add(store, 5, "splunk", True)  # another provider's success does not clear it
    board = dashboard(store, metadata_kinds=[RELEASE], now=_at(6), failure_rate_threshold=1.0)
    [alert] = _alerts(board, "provider_delivery_failing")
    assert alert["count"] == 3 and alert["level"] == "critical"
    assert alert["since"] == "2025-03-01T12:01:00.000000Z"
    webhook = next(p for p in board["providers"] if p["provider"] == "webhook")
    assert webhook["failing"] is True and webhook["consecutive_failures"] == 3

    _add(store, 7, "webhook", True)
    board = dashboard(store, metadata_kinds=[RELEASE], now=_at(8), failure_rate_threshold=1.0)
    assert _alerts(board, "provider_delivery_failing") == []


def test_failed_rollback_delivery_is_critical_until_delivered(store: Store) -> None:
    _add(store, 0, "webhook", False, event_type=ROLLBACK, event_id="rre_prod")
    _add(store, 1, "splunk", True, event_type=ROLLBACK, event_id="rre_prod")
    board = dashboard(store, metadata_kinds=[RELEASE], now=_at(2), failure_rate_threshold=1.0)
    [alert] = _alerts(board, "rollback_delivery_failed")
    assert alert["level"] == "critical" and alert["provider"] == "webhook"
    assert alert["event_id"] == "rre_prod" and alert["count"] == 1
    assert board["status"] == "critical"
    assert board["alerts"][0] == alert  # critical alerts come first

    _add(store, 3, "webhook", True, event_type="cavra.release.promotion_execution", event_id="rpe")
    board = dashboard(store, metadata_kinds=[RELEASE], now=_at(4), failure_rate_threshold=1.0)
    assert len(_alerts(board, "rollback_delivery_failed")) == 1  # another event's success is not this one's
    assert _alerts(board, "provider_delivery_failing") == []

    _add(store, 5, "webhook", True, event_type=ROLLBACK, event_id="rre_prod")
    board = dashboard(store, metadata_kinds=[RELEASE], now=_at(6), failure_rate_threshold=1.0)
    assert _alerts(board, "rollback_delivery_failed") == []


def test_failure_rate_over_threshold_in_window_warns(store: Store) -> None:
    _add(store, 0, "webhook", False)
    _add(store, 1, "webhook", False)
    _add(store, 2, "webhook", True)  # latest succeeded: not failing, but 2 of 3 failed recently
    board = dashboard(store, metadata_kinds=[RELEASE], now=_at(60), window=timedelta(hours=2))
    [alert] = board["alerts"]
    assert (alert["code"], alert["level"], alert["provider"]) == ("failure_rate_high", "warning", "webhook")
    assert alert["count"] == 2 and alert["since"] == "2025-03-01T12:00:00.000000Z"
    assert "2 of 3" in alert["message"]
    assert board["window"]["failure_rate"] == 0.6667

    high = dashboard(store, metadata_kinds=[RELEASE], now=_at(60), failure_rate_threshold=0.7)
    assert _alerts(high, "failure_rate_high") == []
    later = dashboard(store, metadata_kinds=[RELEASE], now=_at(60 * 30), window=timedelta(hours=2))
    assert later["alerts"] == [] and later["window"]["deliveries"] == 0
    assert later["totals"]["deliveries"] == 3  # totals are all-time


def test_unpublished_endpoint_export_warns_until_published(store: Store) -> None:
    store.put_record("endpoint_export", "eme_stable", {"export_id": "eme_stable"})
    stored_at = store.get_record_entry("endpoint_export", "eme_stable").created_at  # type: ignore[union-attr]

    soon = dashboard(store, metadata_kinds=[PUBLICATION], schema=PUBLICATION_DASHBOARD, now=stored_at)
    assert soon["schema_version"] == PUBLICATION_DASHBOARD
    assert soon["alerts"] == [] and soon["exports"] == {"total": 1, "published": 0, "unpublished": 1}

    later = stored_at + timedelta(hours=1)
    board = dashboard(store, metadata_kinds=[PUBLICATION], schema=PUBLICATION_DASHBOARD, now=later)
    [alert] = board["alerts"]
    assert (alert["code"], alert["level"], alert["subject_id"]) == (
        "export_not_published",
        "warning",
        "eme_stable",
    )
    assert alert["count"] == 0 and alert["since"] == iso(stored_at)
    assert "no delivery" in alert["message"]

    store.append_delivery(
        make_record("jamf", success=False, error="HTTP 401"),
        metadata_kind=PUBLICATION,
        subject_kind="endpoint_export",
        subject_id="eme_stable",
    )
    board = dashboard(store, metadata_kinds=[PUBLICATION], schema=PUBLICATION_DASHBOARD, now=later)
    [export_alert] = _alerts(board, "export_not_published")
    assert export_alert["count"] == 1 and "HTTP 401" in export_alert["message"]
    assert _alerts(board, "provider_delivery_failing")[0]["provider"] == "jamf"

    store.append_delivery(
        make_record("jamf", success=True),
        metadata_kind=PUBLICATION,
        subject_kind="endpoint_export",
        subject_id="eme_stable",
    )
    board = dashboard(store, metadata_kinds=[PUBLICATION], schema=PUBLICATION_DASHBOARD, now=later)
    assert _alerts(board, "export_not_published") == []
    assert _alerts(board, "provider_delivery_failing") == []
    assert [a["code"] for a in board["alerts"]] == ["failure_rate_high"]  # 1 of 2 failed in the window
    assert board["exports"] == {"total": 1, "published": 1, "unpublished": 0}

    # the connector dashboard does not carry the export rule
    assert "exports" not in dashboard(store, metadata_kinds=[RELEASE], now=later)


def test_deleting_the_export_record_clears_its_alert(store: Store) -> None:
    store.put_record("endpoint_export", "eme_old", {"export_id": "eme_old"})
    later = datetime.now(UTC) + timedelta(days=1)
    board = dashboard(store, metadata_kinds=[PUBLICATION], schema=PUBLICATION_DASHBOARD, now=later)
    assert [a["subject_id"] for a in board["alerts"]] == ["eme_old"]
    store.delete_record("endpoint_export", "eme_old")
    board = dashboard(store, metadata_kinds=[PUBLICATION], schema=PUBLICATION_DASHBOARD, now=later)
    assert board["alerts"] == []


def test_bad_threshold(store: Store) -> None:
    with pytest.raises(InputError, match="failure_rate_threshold"):
        dashboard(store, metadata_kinds=None, failure_rate_threshold=1.5)


def test_many_failed_rollback_events_are_listed_up_to_a_cap_then_summed(store: Store) -> None:
    from cavra.history import MAX_EVENT_ALERTS

    extra = 5
    for i in range(MAX_EVENT_ALERTS + extra):
        _add(store, i, "webhook", False, event_type=ROLLBACK, event_id=f"rre_{i:03d}")
    board = dashboard(store, metadata_kinds=[RELEASE], now=_at(100), failure_rate_threshold=1.0)
    listed = _alerts(board, "rollback_delivery_failed")
    assert len(listed) == MAX_EVENT_ALERTS
    assert {a["event_id"] for a in listed} == {f"rre_{i:03d}" for i in range(extra, MAX_EVENT_ALERTS + extra)}
    [more] = _alerts(board, "rollback_delivery_failed_more")
    assert more["level"] == "critical" and more["count"] == extra
    assert more["since"] == iso(_at(0))
