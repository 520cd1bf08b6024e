"""Destinations in the store: the index keeps each delivery's destination beside its provider; history
filters and dashboards group by either, on SQLite, PostgreSQL and the JSON file alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cavra.history import dashboard, query_history
from cavra.store import Store
from cavra.store.base import DeliveryFilter

from .conftest import make_record

KIND = "release-connector-delivery"
T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def _item(provider: str, destination: str | None, success: bool) -> dict[str, Any]:
    item = make_record(provider, success=success)["deliveries"][0]
    if destination is not None:
        item["destination"] = destination
    return item


def _fill(store: Store) -> None:
    # (provider, destination, success): an old record without a destination is the provider's own
    rows = [
        ("slack", None, True),
        ("slack", "slack", False),
        ("slack", "slack-release", True),
        ("slack", "slack-release", False),
        ("slack", "slack-release", True),
        ("webhook", "webhook", True),
    ]
    for n, (provider, destination, ok) in enumerate(rows):
        record = make_record(event_id=f"evt-{n}", providers=[_item(provider, destination, ok)])
        store.append_delivery(record, metadata_kind=KIND, created_at=T0 + timedelta(minutes=n))


def test_history_filters_by_destination_or_provider(store: Store) -> None:
    _fill(store)
    release = query_history(store, metadata_kinds=[KIND], destination="slack-release")
    assert release.total == 3
    assert {(i["provider"], i["destination"]) for i in release.items} == {("slack", "slack-release")}
    # the seed's ?provider= keeps meaning the provider (type): every Slack destination
    assert query_history(store, metadata_kinds=[KIND], provider="slack").total == 5
    own = query_history(store, metadata_kinds=[KIND], destination="slack")
    assert [i["event_id"] for i in own.items] == ["evt-1", "evt-0"]  # the old record counts as "slack"
    assert query_history(store, metadata_kinds=[KIND], provider="slack", destination="webhook").total == 0
    assert store.verify_chain().ok


def test_dashboard_groups_by_destination(store: Store) -> None:
    _fill(store)
    board = dashboard(store, metadata_kinds=[KIND], now=T0 + timedelta(hours=1))
    by_name = {d["destination"]: d for d in board["destinations"]}
    assert set(by_name) == {"slack", "slack-release", "webhook"}
    assert (by_name["slack-release"]["provider"], by_name["slack-release"]["total"]) == ("slack", 3)
    assert (by_name["slack-release"]["succeeded"], by_name["slack-release"]["failed"]) == (2, 1)
    assert (by_name["slack"]["total"], by_name["slack"]["failed"]) == (2, 1)
    assert [p["provider"] for p in board["providers"]] == ["slack", "webhook"]
    assert board["providers"][0]["total"] == 5
    # a filter the aggregates cannot answer gives the same figures from the index
    narrowed = store.destination_stats(DeliveryFilter(metadata_kinds=(KIND,), until=T0 + timedelta(hours=1)))
    assert [(s.destination, s.total) for s in narrowed] == [
        ("slack", 2),
        ("slack-release", 3),
        ("webhook", 1),
    ]


def test_a_config_error_of_a_second_destination_is_indexed_on_its_own(store: Store) -> None:
    record = make_record(providers=[_item("slack", "slack", True)])
    record["errors"] = [{"provider": "slack", "destination": "slack-release", "error": "not configured"}]
    store.append_delivery(record, metadata_kind=KIND, created_at=T0)
    page = query_history(store, metadata_kinds=[KIND])
    assert sorted((i["destination"], i["success"]) for i in page.items) == [
        ("slack", True),
        ("slack-release", False),
    ]
    assert store.verify_chain().ok
