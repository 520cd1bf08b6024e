"""History: filters, newest-first order, totals, and cursor/offset pagination on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cavra.errors import InputError
from cavra.history import decode_cursor, encode_cursor, query_history
from cavra.store import Cursor, Store

from .conftest import make_record

RELEASE = "release-connector-delivery"
PUBLICATION = "endpoint-management-publication-delivery"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _seed(store: Store) -> None:
    """10 deliveries one minute apart with known providers, outcomes, kinds and events."""
    plan = [
        ("webhook", True, RELEASE, "cavra.release.promotion_execution", "int-a"),
        ("webhook", False, RELEASE, "cavra.release.rollback_execution", "int-a"),
        ("splunk", True, RELEASE, "cavra.release.promotion_execution", "int-b"),
        ("jamf", False, PUBLICATION, "cavra.endpoint_management_export", None),
        ("jamf", True, PUBLICATION, "cavra.endpoint_management_export", None),
        ("webhook", False, RELEASE, "cavra.release.promotion_execution", "int-a"),
        ("intune", True, PUBLICATION, "cavra.endpoint_management_export", None),
        ("splunk", False, "integration-delivery", "cavra.evidence_bundle", "int-b"),
        ("webhook", True, RELEASE, "cavra.release.rollback_execution", "int-a"),
        ("slack", True, "integration-delivery", "cavra.evidence_bundle", None),
    ]
    for i, (provider, ok, kind, event_type, integration) in enumerate(plan):
        store.append_delivery(
            make_record(provider, success=ok, event_type=event_type, event_id=f"evt-{i}"),
            metadata_kind=kind,
            integration_id=integration,
            created_at=T0 + timedelta(minutes=i),
        )


def _events(page_items: list[dict[str, object]]) -> list[object]:
    return [item["event_id"] for item in page_items]


def test_newest_first_with_every_item_field(store: Store) -> None:
    _seed(store)
    page = query_history(store, metadata_kinds=None)
    assert page.total == 10 and page.next_cursor is None
    assert _events(page.items) == [f"evt-{i}" for i in range(9, -1, -1)]
    item = page.items[-1]
    assert set(item) >= {
        "delivery_id",
        "provider",
        "success",
        "status",
        "status_code",
        "attempt_count",
        "event_type",
        "event_id",
        "metadata_kind",
        "created_at",
        "error",
    }
    assert item["created_at"] == "2025-03-01T12:00:00.000000Z"
    assert item["status"] == "delivered" and item["status_code"] == 200 and item["attempt_count"] == 1


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"metadata_kinds": [RELEASE]}, [8, 5, 2, 1, 0]),
        ({"metadata_kinds": [RELEASE, PUBLICATION]}, [8, 6, 5, 4, 3, 2, 1, 0]),
        ({"metadata_kinds": [RELEASE], "provider": "webhook", "success": False}, [5, 1]),
        ({"metadata_kinds": None, "provider": "splunk"}, [7, 2]),
        ({"metadata_kinds": None, "integration_id": "int-b"}, [7, 2]),
        ({"metadata_kinds": None, "event_type": "cavra.release.rollback_execution"}, [8, 1]),
        ({"metadata_kinds": None, "event_id": "evt-4"}, [4]),
        ({"metadata_kinds": [PUBLICATION], "success": True}, [6, 4]),
        ({"metadata_kinds": None, "success": False}, [7, 5, 3, 1]),
        ({"metadata_kinds": None, "status": "failed", "provider": "jamf"}, [3]),
        (
            {"metadata_kinds": None, "since": T0 + timedelta(minutes=3), "until": T0 + timedelta(minutes=6)},
            [5, 4, 3],
        ),
        ({"metadata_kinds": None, "since": (T0 + timedelta(minutes=8)).replace(tzinfo=None)}, [9, 8]),
        ({"metadata_kinds": None, "provider": "datadog"}, []),
    ],
)
def test_filters(store: Store, filters: dict[str, object], expected: list[int]) -> None:
    _seed(store)
    page = query_history(store, **filters)  # type: ignore[arg-type]
    assert _events(page.items) == [f"evt-{i}" for i in expected]
    assert page.total == len(expected)


def test_cursor_pages_cover_everything_once_and_are_stable_under_appends(store: Store) -> None:
    _seed(store)
    seen: list[object] = []
    page = query_history(store, metadata_kinds=None, limit=3)
    assert page.total == 10 and len(page.items) == 3 and page.next_cursor
    seen += _events(page.items)
    # new deliveries arriving between pages do not shift the following pages
    store.append_delivery(
        make_record(event_id="late-1"), metadata_kind=RELEASE, created_at=T0 + timedelta(hours=1)
    )
    while page.next_cursor:
        page = query_history(store, metadata_kinds=None, limit=3, cursor=page.next_cursor)
        seen += _events(page.items)
    assert seen == [f"evt-{i}" for i in range(9, -1, -1)]
    assert page.total == 11


def test_cursor_orders_same_time_rows_by_insertion(store: Store) -> None:
    for i in range(5):
        store.append_delivery(make_record(event_id=f"same-{i}"), metadata_kind=RELEASE, created_at=T0)
    first = query_history(store, metadata_kinds=None, limit=2)
    second = query_history(store, metadata_kinds=None, limit=2, cursor=first.next_cursor)
    third = query_history(store, metadata_kinds=None, limit=2, cursor=second.next_cursor)
    assert _events(first.items + second.items + third.items) == [f"same-{i}" for i in range(4, -1, -1)]
    assert third.next_cursor is None


def test_offset_pagination(store: Store) -> None:
    _seed(store)
    page = query_history(store, metadata_kinds=None, limit=4, offset=4)
    assert _events(page.items) == ["evt-5", "evt-4", "evt-3", "evt-2"]
    assert page.total == 10
    assert page.to_dict()["count"] == 4


def test_one_item_per_provider_delivery(store: Store) -> None:
    record = make_record(
        providers=[
            {"provider": "splunk", "success": True, "status": "delivered", "attempt_count": 1},
            {
                "provider": "slack",
                "success": False,
                "status": "failed",
                "attempt_count": 3,
                "error": "HTTP 500",
            },
        ]
    )
    stored = store.append_delivery(record, metadata_kind="integration-delivery")
    page = query_history(store, metadata_kinds=["integration-delivery"])
    assert page.total == 2
    assert {(i["provider"], i["success"], i["attempt_count"]) for i in page.items} == {
        ("splunk", True, 1),
        ("slack", False, 3),
    }
    assert {i["delivery_id"] for i in page.items} == {stored.id}
    failed = query_history(store, metadata_kinds=None, success=False).items
    assert [(i["provider"], i["error"]) for i in failed] == [("slack", "HTTP 500")]


def test_bad_arguments(store: Store) -> None:
    with pytest.raises(InputError, match="limit"):
        query_history(store, metadata_kinds=None, limit=0)
    with pytest.raises(InputError, match="limit"):
        query_history(store, metadata_kinds=None, limit=100_000)
    with pytest.raises(InputError, match="cursor"):
        query_history(store, metadata_kinds=None, cursor="not-a-cursor")
    with pytest.raises(InputError, match="unknown metadata kind"):
        query_history(store, metadata_kinds=["release"])


def test_cursor_round_trip() -> None:
    c = Cursor(datetime(2025, 1, 1, 0, 0, 0, 123456, tzinfo=UTC), 42)
    assert decode_cursor(encode_cursor(c)) == c


def test_an_unknown_provider_is_refused_not_answered_empty(store: Store) -> None:
    from cavra.errors import InputError

    with pytest.raises(InputError, match="--provider: unknown provider 'nobody'; known providers: splunk"):
        query_history(store, metadata_kinds=None, provider="nobody")
