"""Rich renderings shared by commands: the delivery record as a table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.table import Table
from rich.text import Text

_STYLE = {"delivered": "green", "failed": "bold red", "pending": "yellow"}


def delivery_table(record: Mapping[str, Any]) -> Table:
    table = Table(title=f"{record.get('event_type')} {record.get('event_id')}", title_justify="left")
    for col in ("provider", "result", "status", "attempts", "remote id", "error"):
        table.add_column(col, overflow="fold")
    for d in record.get("deliveries", []):
        status = str(d.get("status"))
        table.add_row(
            str(d.get("provider")),
            Text(status, style=_STYLE.get(status, "")),
            "" if d.get("status_code") is None else str(d["status_code"]),
            str(d.get("attempt_count")),
            str(d.get("remote_id") or ""),
            str(d.get("error") or ""),
        )
    delivered = {d.get("provider") for d in record.get("deliveries", [])}
    for err in record.get("errors", []):
        if err.get("provider") not in delivered:
            table.add_row(
                str(err.get("provider")),
                Text("not configured", style="bold red"),
                "",
                "0",
                "",
                str(err.get("error")),
            )
    return table
