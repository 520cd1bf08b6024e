"""``cavra routes test`` for a grouping route: the group an event would join (its key, the values of
``group_by`` and the windows) and the message its group's first flush would send if no other event joined
it (nothing is stored, nothing is sent)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cavra.grouping.message import group_event
from cavra.routing import subject_of
from cavra.routing.grouping import GroupSettings, group_of
from cavra.store.groups import GroupMember


def describe_group(
    event: Mapping[str, Any], destination: str, route: str, settings: GroupSettings
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the ``group`` of a routes-test answer, the event its first message would carry)."""
    ref = group_of(event, destination, route, settings)
    kind, sid = subject_of(event)
    member = GroupMember(
        destination,
        str(event.get("event_id")),
        ref.slot,
        "grp_preview",
        {"event": dict(event), "subject_kind": kind or None, "subject_id": sid or None},
        datetime.now(UTC),
    )
    info = {"group_id": "grp_preview", "group_key": ref.key, "labels": ref.labels, "flush": 1}
    shown = ref.describe()
    shown["note"] = (
        f"joins group {ref.key}: its first message waits group_wait ({settings.group_wait:g}s) for more "
        f"events, later ones group_interval ({settings.group_interval:g}s); the message below is that of "
        "this event alone"
    )
    return shown, group_event(info, [member], route)
