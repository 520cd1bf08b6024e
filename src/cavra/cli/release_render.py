"""Rich renderings of delivery history pages and dashboards (alert levels in colour)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from cavra.cli.tables import Col, Grid

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
    table = Grid(
        [
            *(Col(c) for c in ("time (UTC)", "delivery", "provider", "event type", "subject", "result")),
            Col("HTTP", "num", "right"),
            Col("tries", "num", "right"),
            Col("error", "text"),
        ],
        title=title,
    )
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
        if alert.get("acknowledged_by"):
            who, at = _cell(alert["acknowledged_by"]), _cell(alert.get("acknowledged_at"))
            until = _cell(alert.get("acknowledged_until"))
            line.append(f"  [acknowledged by {who} at {at}, silenced until {until}]", style="dim")
        lines.append(line)
    return Group(*lines)


def _destinations_table(data: Mapping[str, Any]) -> Grid | None:
    """Per destination, when some destination is not simply its provider's own (``slack-release``)."""
    named = [d for d in data.get("destinations", []) if d.get("destination") != d.get("provider")]
    if not named:
        return None
    dests = Grid(
        [
            Col("destination"),
            Col("provider"),
            *(Col(c, "num", "right") for c in ("total", "ok", "failed", "pending", "success")),
            Col("last success"),
        ],
        title="destinations",
    )
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


def _totals_table(data: Mapping[str, Any]) -> Grid:
    totals: Mapping[str, Any] = data.get("totals", {})
    window: Mapping[str, Any] = data.get("window", {})
    summary = Grid(
        [
            Col(c, "num", "right")
            for c in (
                "deliveries",
                "succeeded",
                "failed",
                "pending",
                "success rate",
                "failed (window)",
                "failure rate",
            )
        ],
        title="totals",
    )
    summary.add_row(
        _cell(totals.get("deliveries", 0)),
        Text(_cell(totals.get("succeeded", 0)), style="green"),
        Text(_cell(totals.get("failed", 0)), style="red" if totals.get("failed") else ""),
        _cell(totals.get("pending", 0)),
        _rate(data.get("success_rate")),
        _cell(window.get("failed", 0)),
        _rate(window.get("failure_rate")),
    )
    return summary


def _providers_table(data: Mapping[str, Any]) -> Grid:
    providers = Grid(
        [
            Col("provider"),
            *(
                Col(c, "num", "right")
                for c in ("total", "ok", "failed", "pending", "success", "failing streak")
            ),
            Col("last success"),
        ],
        title="providers",
    )
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
    return providers


def dashboard_view(title: str, data: Mapping[str, Any]) -> RenderableType:
    """Status line, totals, providers, event types, exports (publications), latest failures, alerts."""
    status = _cell(data.get("status") or "ok")
    head = Text(f"{title}  ", style="bold")
    head.append(f" {status.upper()} ", style=_LEVEL.get(status, "bold"))
    head.append(f"  generated {_time(data.get('generated_at'))} UTC", style="dim")
    parts: list[RenderableType] = [head]

    parts.append(_totals_table(data))
    parts.append(_providers_table(data))

    dests = _destinations_table(data)
    if dests is not None:
        parts.append(dests)

    if data.get("event_types"):
        kinds = Grid(
            [Col("event type"), *(Col(c, "num", "right") for c in ("total", "ok", "failed"))],
            title="event types",
        )
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
    """Where the delivery record(s) were stored, and the chain hash when there is one record."""
    ids = [str(i) for i in result.get("delivery_ids") or [] if i]
    if not ids and result.get("delivery_id"):
        ids = [str(result["delivery_id"])]
    if not ids:
        return Text(f"nothing stored in {location}", style="dim")
    line = Text("stored ", style="dim")
    line.append(", ".join(ids), style="bold")
    kind = result.get("metadata_kind")
    line.append(f"{f' ({kind})' if kind else ''} in {location}", style="dim")
    sha = _cell(result.get("record_sha256"))
    if sha:
        line.append(f"  record_sha256 {sha[:16]}…", style="dim")
    return line


def followup_lines(followups: Sequence[Mapping[str, Any]], location: str) -> list[Text]:
    """One line per note from ``delivery_followups``: what was not sent, and what will be retried."""
    lines = []
    for note in followups:
        provider = _cell(note.get("provider"))
        at = note.get("at")
        when = at.strftime("%Y-%m-%d %H:%M:%S UTC") if isinstance(at, datetime) else _cell(at)
        if note.get("kind") == "already_delivered":
            state = _cell(note.get("status")) or "delivered"
            line = Text(f"{provider}: already {state} at {when}; nothing sent", style="yellow")
            line.append(" (the record above is the earlier one)", style="dim")
        else:
            line = Text(f"{provider}: the job stays queued and will be retried at {when}", style="yellow")
            line.append(f" by `cavra worker --store {location}` (or run this command again)", style="dim")
        lines.append(line)
    return lines
