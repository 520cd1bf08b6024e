"""Server-rendered SVG charts (no script; presentation attributes only, so the strict CSP holds)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

WIDTH, HEIGHT, PAD = 720, 180, 24


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    ok_y: float
    ok_h: float
    bad_y: float
    bad_h: float
    label: str


def bars(buckets: Sequence[Mapping[str, Any]], max_total: int) -> list[Bar]:
    """Stacked bars (succeeded below, failed on top) scaled to the chart."""
    if not buckets:
        return []
    slot = (WIDTH - 2 * PAD) / len(buckets)
    scale = (HEIGHT - 2 * PAD) / max(max_total, 1)
    out = []
    for n, b in enumerate(buckets):
        ok_h = int(b.get("succeeded") or 0) * scale
        bad_h = int(b.get("failed") or 0) * scale
        base = HEIGHT - PAD
        rest = int(b.get("total") or 0) - int(b.get("succeeded") or 0) - int(b.get("failed") or 0)
        label = f"{b.get('start')}: {b.get('total')} deliveries, {b.get('failed')} failed"
        label += f", {rest} pending" if rest else ""
        out.append(
            Bar(PAD + n * slot + slot * 0.1, slot * 0.8, base - ok_h, ok_h, base - ok_h - bad_h, bad_h, label)
        )
    return out


def rate_points(buckets: Sequence[Mapping[str, Any]]) -> str:
    """The success-rate polyline's points (buckets without deliveries are left out)."""
    if not buckets:
        return ""
    slot = (WIDTH - 2 * PAD) / len(buckets)
    points = []
    for n, b in enumerate(buckets):
        rate = b.get("success_rate")
        if isinstance(rate, int | float):
            x = PAD + n * slot + slot / 2
            y = HEIGHT - PAD - rate * (HEIGHT - 2 * PAD)
            points.append(f"{x:.1f},{y:.1f}")
    return " ".join(points)
