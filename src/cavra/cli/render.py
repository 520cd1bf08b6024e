"""Rich renderings shared by commands: the delivery record as a table, a batch of records as a summary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.text import Text

from cavra.cli.tables import Col, Grid

_STYLE = {"delivered": "green", "failed": "bold red", "pending": "yellow"}


def destination_label(item: Mapping[str, Any]) -> str:
    """A delivery's (or error's) destination as shown: ``slack``, or ``slack-release (slack)`` for a
    destination not named after its provider."""
    provider = str(item.get("provider"))
    destination = str(item.get("destination") or provider)
    return provider if destination == provider else f"{destination} ({provider})"


def delivery_table(record: Mapping[str, Any]) -> Grid:
    table = Grid(
        [
            Col("provider"),
            Col("result"),
            Col("status"),
            Col("attempts"),
            Col("remote id"),
            Col("error", "text"),
        ],
        title=f"{record.get('event_type')} {record.get('event_id')}",
    )
    for d in record.get("deliveries", []):
        status = str(d.get("status"))
        table.add_row(
            destination_label(d),
            Text(status, style=_STYLE.get(status, "")),
            "" if d.get("status_code") is None else str(d["status_code"]),
            str(d.get("attempt_count")),
            str(d.get("remote_id") or ""),
            str(d.get("error") or ""),
        )
    delivered = {destination_label(d) for d in record.get("deliveries", [])}
    for err in record.get("errors", []):
        if destination_label(err) not in delivered:
            table.add_row(
                destination_label(err),
                Text("not configured", style="bold red"),
                "",
                "0",
                "",
                str(err.get("error")),
            )
    return table


def provider_counts(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Per provider: how many of a batch's events were delivered, failed or are pending. A provider
    whose config did not load counts every event as failed."""
    counts: dict[str, dict[str, int]] = {}
    for record in records:
        seen = set()
        for d in record.get("deliveries", []):
            provider = destination_label(d)
            seen.add(provider)
            row = counts.setdefault(provider, {"delivered": 0, "failed": 0, "pending": 0})
            status = str(d.get("status"))
            row[status if status in row else "failed"] += 1
        for err in record.get("errors", []):
            provider = destination_label(err)
            if provider not in seen:
                counts.setdefault(provider, {"delivered": 0, "failed": 0, "pending": 0})["failed"] += 1
    return counts


def batch_summary_table(records: Sequence[Mapping[str, Any]]) -> Grid:
    """The per-provider summary of a batch: delivered / failed / pending counts and the first error."""
    first_error: dict[str, str] = {}
    for record in records:
        seen = set()
        for d in record.get("deliveries", []):
            seen.add(destination_label(d))
            if d.get("status") != "delivered" and d.get("error"):
                first_error.setdefault(destination_label(d), f"{record.get('event_id')}: {d['error']}")
        for err in record.get("errors", []):
            if destination_label(err) not in seen:
                first_error.setdefault(destination_label(err), f"not configured: {err.get('error')}")
    ok = sum(1 for r in records if r.get("success"))
    table = Grid(
        [
            Col("provider"),
            *(Col(c, "num", "right") for c in ("delivered", "failed", "pending")),
            Col("first error", "text"),
        ],
        title=f"{len(records)} events: {ok} delivered everywhere, {len(records) - ok} not",
    )
    for provider, row in provider_counts(records).items():
        table.add_row(
            provider,
            *(
                Text(str(row[k]), style=_STYLE[k] if row[k] else "")
                for k in ("delivered", "failed", "pending")
            ),
            first_error.get(provider, ""),
        )
    return table
