"""Rich renderings of delivery history pages and dashboards (alert levels in colour)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

_STATUS = {"delivered": "green", "failed": "bold red", "pending": "yellow"}
_LEVEL = {"critical": "bold white on red", "warning": "bold yellow", "ok": "bold green"}


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def _rate(value: object) -> str:
    return "" if not isinstance(value, (int, float)) else f"{value:.0%}"


def _time(value: object) -> str:
    text = _cell(value)
    return text.replace("T", " ")[:19] if text else ""


def history_table(title: str, page: Mapping[str, Any]) -> RenderableType:
    """One history page; the caption gives the count, the total and the next cursor."""
    items: Sequence[Mapping[str, Any]] = page.get("items", [])
    if not items:
        return Text(f"{title}: no provider deliveries match", style="dim")
    table = Table(title=title, title_justify="left")
    for col in (
        "time (UTC)",
        "delivery",
        "provider",
        "event type",
        "subject",
        "result",
        "HTTP",
        "tries",
        "error",
    ):
        table.add_column(col, overflow="fold")
    for item in items:
        status = _cell(item.get("status"))
        table.add_row(
            _time(item.get("created_at")),
            _cell(item.get("delivery_id")),
            _cell(item.get("provider")),
            _cell(item.get("event_type")),
            _cell(item.get("subject_id") or item.get("event_id")),
            Text(status, style=_STATUS.get(status, "")),
            _cell(item.get("status_code")),
            _cell(item.get("attempt_count")),
            _cell(item.get("error")),
        )
    caption = f"{len(items)} of {page.get('total', len(items))} provider deliveries"
    if page.get("next_cursor"):
        caption += f"; next page: --cursor {page['next_cursor']}"
    table.caption = caption
    table.caption_justify = "left"
    return table


def alerts_view(alerts: Sequence[Mapping[str, Any]]) -> RenderableType:
    if not alerts:
        return Text("alerts: none", style="green")
    lines: list[RenderableType] = [Text("alerts:", style="bold")]
    for alert in alerts:
        level = _cell(alert.get("level"))
        line = Text("  ")
        line.append(f" {level.upper()} ", style=_LEVEL.get(level, "bold"))
        line.append(f" {alert.get('code')}: ", style="bold")
        line.append(_cell(alert.get("message")))
        lines.append(line)
    return Group(*lines)


def _destinations_table(data: Mapping[str, Any]) -> Table | None:
    """Per destination, when some destination is not simply its provider's own (``slack-release``)."""
    named = [d for d in data.get("destinations", []) if d.get("destination") != d.get("provider")]
    if not named:
        return None
    dests = Table(title="destinations", title_justify="left")
    for col in ("destination", "provider", "total", "ok", "failed", "pending", "success", "last success"):
        dests.add_column(col)
    for d in data["destinations"]:
        dests.add_row(
            _cell(d.get("destination")),
            _cell(d.get("provider")),
            _cell(d.get("total")),
            _cell(d.get("succeeded")),
            _cell(d.get("failed")),
            _cell(d.get("pending")),
            _rate(d.get("success_rate")),
            _time(d.get("last_success_at")),
        )
    return dests


def dashboard_view(title: str, data: Mapping[str, Any]) -> RenderableType:
    """Status line, totals, providers, event types, exports (publications), latest failures, alerts."""
    status = _cell(data.get("status") or "ok")
    head = Text(f"{title}  ", style="bold")
    head.append(f" {status.upper()} ", style=_LEVEL.get(status, "bold"))
    head.append(f"  generated {_time(data.get('generated_at'))} UTC", style="dim")
    parts: list[RenderableType] = [head]

    totals: Mapping[str, Any] = data.get("totals", {})
    window: Mapping[str, Any] = data.get("window", {})
    summary = Table(show_header=True, title="totals", title_justify="left")
    for col in (
        "deliveries",
        "succeeded",
        "failed",
        "pending",
        "success rate",
        "failed (window)",
        "failure rate",
    ):
        summary.add_column(col, justify="right")
    summary.add_row(
        _cell(totals.get("deliveries", 0)),
        Text(_cell(totals.get("succeeded", 0)), style="green"),
        Text(_cell(totals.get("failed", 0)), style="red" if totals.get("failed") else ""),
        _cell(totals.get("pending", 0)),
        _rate(data.get("success_rate")),
        _cell(window.get("failed", 0)),
        _rate(window.get("failure_rate")),
    )
    parts.append(summary)

    providers = Table(title="providers", title_justify="left")
    for col in ("provider", "total", "ok", "failed", "pending", "success", "failing streak", "last success"):
        providers.add_column(col)
    for p in data.get("providers", []):
        streak = int(p.get("consecutive_failures") or 0)
        providers.add_row(
            _cell(p.get("provider")),
            _cell(p.get("total")),
            _cell(p.get("succeeded")),
            _cell(p.get("failed")),
            _cell(p.get("pending")),
            _rate(p.get("success_rate")),
            Text(str(streak), style="bold red" if streak else "green"),
            _time(p.get("last_success_at")),
        )
    parts.append(providers)

    dests = _destinations_table(data)
    if dests is not None:
        parts.append(dests)

    if data.get("event_types"):
        kinds = Table(title="event types", title_justify="left")
        for col in ("event type", "total", "ok", "failed"):
            kinds.add_column(col)
        for e in data["event_types"]:
            kinds.add_row(
                _cell(e.get("event_type")),
                _cell(e.get("total")),
                _cell(e.get("succeeded")),
                _cell(e.get("failed")),
            )
        parts.append(kinds)

    exports = data.get("exports")
    if isinstance(exports, Mapping):
        line = Text("exports: ", style="bold")
        line.append(f"{exports.get('total', 0)} stored, {exports.get('published', 0)} published, ")
        unpublished = int(exports.get("unpublished") or 0)
        line.append(f"{unpublished} unpublished", style="bold yellow" if unpublished else "green")
        parts.append(line)

    failures = data.get("latest_failures") or []
    if failures:
        parts.append(history_table("latest failures", {"items": failures, "total": len(failures)}))
    parts.append(alerts_view(data.get("alerts", [])))
    return Group(*parts)


def delivery_summary(result: Mapping[str, Any], location: str) -> Text:
    """Where the delivery record was stored, and its chain hash."""
    line = Text("stored ", style="dim")
    line.append(_cell(result.get("delivery_id")), style="bold")
    line.append(f" ({result.get('metadata_kind')}) in {location}", style="dim")
    sha = _cell(result.get("record_sha256"))
    if sha:
        line.append(f"  record_sha256 {sha[:16]}…", style="dim")
    return line
